"""Brain classes: joint CTC/attention training, and multi-teacher distillation.

The YAML of a recipe names its Brain class (``brain_class``) and declares the
modules; the classes here only wire them together:

``modules``: ``compute_features``, ``normalize``, ``enc``, ``emb``, ``dec``,
``ctc_lin``, ``seq_lin``.
``hparams``: ``ctc_weight``, ``ctc_cost``, ``seq_cost``, ``valid_search``,
``test_search``, ``error_stats``, ``lr_annealing``, ``epoch_counter``,
``train_logger``, optionally ``augmentation``; for :class:`DistillationBrain`
also ``strategy``, ``kd_alpha``, ``kd_temperature``, ``ctc_kd``
(``pseudo_label`` or ``kl``) and ``weighted_temperature``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional

import speechbrain as sb
import torch
from speechbrain.utils.data_utils import undo_padding
from speechbrain.utils.distributed import if_main_process, main_process_only

from hieradist_lobes.losses import (
    combine_teachers,
    ctc_pseudo_label_loss,
    frame_kl_loss,
    soft_cross_entropy,
    strategy_weights,
)

CTC_KD_METHODS = ("pseudo_label", "kl")


@dataclass
class ASROutput:
    """What the forward pass gives the objectives."""

    ctc_logits: torch.Tensor
    ctc_logprobs: torch.Tensor
    seq_logits: torch.Tensor
    seq_logprobs: torch.Tensor
    wav_lens: torch.Tensor
    hyps: Optional[List[List[int]]]


class CTCAttentionBrain(sb.Brain):
    """Joint CTC/attention ASR: ``ctc_weight·CTC + (1 − ctc_weight)·NLL``.

    Validation decodes greedily, test with the beam search (with CTC scoring)
    of the YAML; both report the label error rate (PER for phones).  Each
    epoch's statistics are appended to ``<output_folder>/history.jsonl``.
    """

    def _wrap_distributed(self) -> None:
        # SpeechBrain 1.1 turns BatchNorm into SyncBatchNorm before wrapping in
        # DDP, and SyncBatchNorm runs on GPUs only: on CPU (gloo) wrap as is.
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        from torch.nn.parallel import DistributedDataParallel

        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, device_ids=None, find_unused_parameters=self.find_unused_parameters)

    def compute_forward(self, batch, stage) -> ASROutput:
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        augmentation = getattr(self.hparams, "augmentation", None)
        if stage == sb.Stage.TRAIN and augmentation is not None:
            # Time-domain augmentation may change the number of samples (speed
            # perturbation); wav_lens follows, labels are unchanged.
            wavs, wav_lens = augmentation(wavs, wav_lens)
        feats = self.modules.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens, epoch=self.hparams.epoch_counter.current)
        encoded = self.modules.enc(feats)
        ctc_logits = self.modules.ctc_lin(encoded)
        embedded = self.modules.emb(tokens_bos)
        decoded, _ = self.modules.dec(embedded, encoded, wav_lens)
        seq_logits = self.modules.seq_lin(decoded)
        hyps = None
        if stage == sb.Stage.VALID:
            hyps, _, _, _ = self.hparams.valid_search(encoded.detach(), wav_lens)
        elif stage == sb.Stage.TEST:
            hyps, _, _, _ = self.hparams.test_search(encoded.detach(), wav_lens)
        return ASROutput(
            ctc_logits=ctc_logits,
            ctc_logprobs=torch.log_softmax(ctc_logits, dim=-1),
            seq_logits=seq_logits,
            seq_logprobs=torch.log_softmax(seq_logits, dim=-1),
            wav_lens=wav_lens,
            hyps=hyps,
        )

    def hard_losses(self, outputs: ASROutput, batch):
        """The supervised CTC and attention losses (batch means)."""
        tokens, tokens_lens = batch.tokens
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        ctc = self.hparams.ctc_cost(outputs.ctc_logprobs, tokens, outputs.wav_lens, tokens_lens)
        seq = self.hparams.seq_cost(outputs.seq_logprobs, tokens_eos, length=tokens_eos_lens)
        return ctc, seq

    def combine_heads(self, ctc: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        weight = self.hparams.ctc_weight
        return weight * ctc + (1 - weight) * seq

    def compute_objectives(self, outputs: ASROutput, batch, stage) -> torch.Tensor:
        ctc, seq = self.hard_losses(outputs, batch)
        self.track_hypotheses(outputs, batch, stage)
        return self.combine_heads(ctc, seq)

    def track_hypotheses(self, outputs: ASROutput, batch, stage) -> None:
        if stage == sb.Stage.TRAIN or outputs.hyps is None:
            return
        tokens, tokens_lens = batch.tokens
        decode = self.hparams.tokenizer.decode_ndim
        predicted = [decode(hyp) for hyp in outputs.hyps]
        targets = [decode(seq) for seq in undo_padding(tokens, tokens_lens)]
        self.error_metrics.append(batch.id, predicted, targets)

    def on_stage_start(self, stage, epoch=None) -> None:
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None) -> None:
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["error_rate"] = self.error_metrics.summarize("error_rate")
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stats["error_rate"])
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": old_lr}, train_stats=self.train_stats, valid_stats=stats
            )
            self._append_history({"epoch": epoch, "lr": old_lr, "train_loss": self.train_stats["loss"],
                                  "valid_loss": stage_loss, "valid_error_rate": stats["error_rate"]})
            self.checkpointer.save_and_keep_only(meta={"error_rate": stats["error_rate"]}, min_keys=["error_rate"])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            self.test_stats = stats
            if if_main_process():
                with open(self.hparams.error_rate_file, "w", encoding="utf-8") as handle:
                    self.error_metrics.write_stats(handle)

    @main_process_only
    def _append_history(self, entry) -> None:
        path = os.path.join(self.hparams.output_folder, "history.jsonl")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: float(v) for k, v in entry.items()}) + "\n")


class DistillationBrain(CTCAttentionBrain):
    """A student distilled from several teachers (multi-teacher KD).

    Per teacher ``k`` and utterance: the CTC distillation loss (``ctc_kd``:
    ``pseudo_label``, CTC on the teacher's greedy 1-best, or ``kl``, frame
    KL with temperature) and the attention distillation loss (soft
    cross-entropy with temperature on both sides).  The strategy weights the
    teachers (see :func:`hieradist_lobes.losses.strategy_weights`); then::

        L_ctc = α·KD_ctc + (1 − α)·CTC        (KD_ctc scaled by T² for ``kl``)
        L_seq = α·T²·KD_seq + (1 − α)·NLL
        L     = ctc_weight·L_ctc + (1 − ctc_weight)·L_seq

    Validation and test use the hard losses only (no teacher outputs needed).
    """

    def distillation_losses(self, outputs: ASROutput, batch):
        """Teacher-weighted distillation losses (batch means) for both heads."""
        hp = self.hparams
        if hp.ctc_kd not in CTC_KD_METHODS:
            raise ValueError(f"ctc_kd must be one of {', '.join(CTC_KD_METHODS)}, got {hp.ctc_kd!r}")
        temperature = float(hp.kd_temperature)
        teacher_ctc = batch.teacher_ctc.data
        teacher_ctc_lengths = batch.teacher_ctc_lengths.data
        teacher_att = batch.teacher_att.data
        frames = outputs.ctc_logprobs.shape[1]
        student_lengths = torch.round(outputs.wav_lens * frames).long().clamp(min=1, max=frames)
        _, tokens_eos_lens = batch.tokens_eos
        token_lengths = torch.round(tokens_eos_lens * outputs.seq_logits.shape[1]).long()

        ctc_losses, seq_losses = [], []
        # teacher_ctc: batch × frames × teachers × classes; teacher_att likewise.
        for k in range(teacher_ctc.shape[2]):
            if hp.ctc_kd == "pseudo_label":
                ctc_losses.append(ctc_pseudo_label_loss(outputs.ctc_logprobs, student_lengths, teacher_ctc[:, :, k],
                                                        teacher_ctc_lengths[:, k], hp.blank_index))
            else:
                ctc_losses.append(temperature**2 * frame_kl_loss(outputs.ctc_logits, teacher_ctc[:, :, k],
                                                                   student_lengths, teacher_ctc_lengths[:, k],
                                                                   temperature))
            seq_losses.append(temperature**2 * soft_cross_entropy(outputs.seq_logits, teacher_att[:, :, k],
                                                                    token_lengths, temperature))
        ctc_weights, att_weights = strategy_weights(
            hp.strategy, batch.teacher_ctc_error_rate.data.T, batch.teacher_att_error_rate.data.T,
            float(hp.weighted_temperature),
        )
        kd_ctc = combine_teachers(torch.stack(ctc_losses), ctc_weights).mean()
        kd_seq = combine_teachers(torch.stack(seq_losses), att_weights).mean()
        return kd_ctc, kd_seq

    def compute_objectives(self, outputs: ASROutput, batch, stage) -> torch.Tensor:
        ctc, seq = self.hard_losses(outputs, batch)
        self.track_hypotheses(outputs, batch, stage)
        if stage != sb.Stage.TRAIN:
            return self.combine_heads(ctc, seq)
        alpha = float(self.hparams.kd_alpha)
        kd_ctc, kd_seq = self.distillation_losses(outputs, batch)
        return self.combine_heads(alpha * kd_ctc + (1 - alpha) * ctc, alpha * kd_seq + (1 - alpha) * seq)
