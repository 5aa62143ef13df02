"""Brain classes: joint CTC/attention training, multi-teacher distillation,
and CIF models with hierarchical distillation from a pre-trained LM.

Each recipe script builds the Brain it needs; the model's forward pass is
the model class's (:mod:`hieradist_lobes.models`), the Brains add
augmentation, losses, decoding for scoring, logging and checkpoints.

``modules``: ``model`` (:class:`~hieradist_lobes.models.CTCAttentionModel`).
``hparams``: ``ctc_weight``, ``ctc_cost``, ``seq_cost``, ``valid_search``,
``test_search``, ``error_stats``, ``lr_annealing``, ``epoch_counter``,
``train_logger``, optionally ``augmentation``; for :class:`DistillationBrain`
also ``strategy``, ``kd_alpha``, ``kd_temperature``, ``ctc_kd``
(``pseudo_label`` or ``kl``), ``weighted_temperature``, ``kd_normalisation`` and ``best_ties``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import speechbrain as sb
import torch
from speechbrain.utils.data_utils import undo_padding
from speechbrain.utils.distributed import if_main_process, main_process_only, run_on_main

from hieradist_lobes.averaging import (
    average_count,
    averaged_checkpoint,
    averaged_folder,
    averaged_sources,
    keep_checkpoints,
)
from hieradist_lobes.cif import quantity_loss
from hieradist_lobes.ctc_scoring import ctc_greedy_decode
from hieradist_lobes.errors import ReportedError
from hieradist_lobes.experiment_logs import with_tensorboard
from hieradist_lobes.export import nonfinite_tensors
from hieradist_lobes.losses import (
    acd_loss,
    attention_kd_loss,
    combine_teachers,
    ctc_loss_sum,
    ctc_pseudo_label_loss,
    frame_kl_loss,
    length_mask,
    lrd_loss,
    sequence_cross_entropy,
    soft_cross_entropy,
    strategy_weights,
)
from hieradist_lobes.models import ASROutput, CIFOutputs
from hieradist_lobes.running_stats import RunningStatistics
from hieradist_lobes.schedules import ramp_factor

logger = logging.getLogger(__name__)

CTC_KD_METHODS = ("pseudo_label", "kl")


class DivergenceError(ReportedError, RuntimeError):
    """Training diverged: a loss or the model's weights are no longer finite."""


@dataclass
class ASRStepOutput(ASROutput):
    """The model's outputs for a batch, and the decoded hypotheses (valid/test)."""

    hyps: Optional[List[List[int]]] = None


class ProjectBrain(sb.Brain):
    """What every Brain of the project shares: CPU-safe DDP wrapping, the
    per-epoch ``history.jsonl`` (and sampled per-term gradient norms in it),
    scoring hypotheses and test results, checkpoint averaging, and stopping
    on divergence.

    Divergence: a non-finite training loss is skipped up to SpeechBrain's
    ``--nonfinite_patience`` batches, then stops the run with
    :class:`DivergenceError` naming the epoch, step and loss terms; a
    non-finite validation or test loss, or non-finite weights at the end of
    an epoch, stop it at once (SpeechBrain would average the loss over the
    finite batches only, and log 0 when none is).  A skipped batch leaves the
    running statistics (the feature normaliser's, BatchNorm's) as they were
    before its forward pass (:class:`RunningStatistics`).  Subclasses report their
    loss terms with :meth:`remember_terms`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.hparams, "tensorboard", False):  # the YAML's switch: TensorBoard besides train_log.txt
            self.hparams.train_logger = with_tensorboard(self.hparams.train_logger, self.hparams.tensorboard_folder)

    def log_gradient_norms(self, contributions: Dict[str, torch.Tensor]) -> None:
        """Every ``grad_norm_every`` updates (0: never), append each loss term's
        contribution to the loss and the norm of its gradient on the encoder
        to ``history.jsonl`` (``{"update", "epoch", "loss_<term>",
        "grad_norm_<term>"}``): which term sets the direction of the updates,
        before clipping.

        ``contributions``: each term as it enters the loss (weight included).
        One extra backward pass per term on the sampled batches; skipped
        under DDP, where a backward pass outside the step would trip its
        gradient hooks.
        """
        every = int(getattr(self.hparams, "grad_norm_every", 0) or 0)
        update = int(self.optimizer_step)
        if (not every or update % every or self.distributed_launch
                or getattr(self, "_last_norm_update", None) == update):
            return
        self._last_norm_update = update
        model = self.modules.model
        encoder = [p for p in model.enc.parameters() if p.requires_grad]
        entry = {"update": update, "epoch": self._epoch()}
        for name, term in contributions.items():
            if not term.requires_grad:
                continue
            grads = torch.autograd.grad(term, encoder, retain_graph=True, allow_unused=True)
            squares = [(g.float() ** 2).sum() for g in grads if g is not None]
            entry[f"loss_{name}"] = float(term.detach())
            entry[f"grad_norm_{name}"] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
        self._append_history(entry)
        if hasattr(self.hparams.train_logger, "log_updates"):
            self.hparams.train_logger.log_updates(update, {k: v for k, v in entry.items() if k not in ("update", "epoch")})

    def remember_terms(self, terms: Dict[str, torch.Tensor], batch) -> None:
        """Keep the batch's loss terms and utterance IDs, to name them if the loss is not finite.

        The terms stay tensors (no device sync per step); they become numbers
        only when a message needs them.
        """
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        self.last_ids = list(batch.id)

    def _describe_loss(self, loss: torch.Tensor) -> str:
        terms = {name: float(value) for name, value in getattr(self, "last_terms", {}).items()}
        ids = getattr(self, "last_ids", [])
        bad = [name for name, value in terms.items() if not math.isfinite(value)]
        listed = ", ".join(f"{name} {value:.4g}" for name, value in terms.items())
        return (f"the loss is {float(loss.detach()):.4g}" + (f" (terms: {listed})" if listed else "")
                + (f"; not finite: {', '.join(bad)}" if bad else "")
                + (f"; utterances {', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''}" if ids else ""))

    def _epoch(self) -> int:
        return int(self.hparams.epoch_counter.current)

    def on_fit_batch_start(self, batch, should_step) -> None:
        # A skipped batch's forward pass must leave no trace in the normaliser's or BatchNorm's statistics.
        self.running_statistics = RunningStatistics.of(self.modules)
        super().on_fit_batch_start(batch, should_step)

    def check_loss_isfinite(self, loss: torch.Tensor) -> None:
        if torch.isfinite(loss):
            return
        self.nonfinite_count += 1
        where = f"epoch {self._epoch()}, step {self.step}"
        if self.nonfinite_count > self.nonfinite_patience:
            raise DivergenceError(
                f"training diverged at {where}: {self._describe_loss(loss)}; {self.nonfinite_count} non-finite "
                f"batches (--nonfinite_patience {self.nonfinite_patience}). Lower the learning rate (lr) or "
                "check the data; nothing was exported")
        self.skip_update = self.restore_statistics = True
        logger.warning("%s: %s; batch skipped (%d of --nonfinite_patience %d)", where, self._describe_loss(loss),
                       self.nonfinite_count, self.nonfinite_patience)

    def on_fit_batch_end(self, batch, outputs, loss, should_step) -> None:
        # After the backward pass: autograd still needs BatchNorm's buffers as the forward pass left them.
        if getattr(self, "restore_statistics", False):
            self.restore_statistics = False
            self.running_statistics.restore()
        super().on_fit_batch_end(batch, outputs, loss, should_step)

    def optimizers_step(self) -> None:
        # SpeechBrain applies a non-finite loss's gradients unless skip_nonfinite_grads (off by default): a
        # skipped batch (with those it is accumulated with) must not move the weights.
        if getattr(self, "skip_update", False):
            self.skip_update = False
            optimizers = self.optimizers_dict or ({"optimizer": self.optimizer} if self.opt_class else {})
            for optimizer in optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            return
        super().optimizers_step()

    def evaluate_batch(self, batch, stage):
        loss = super().evaluate_batch(batch, stage)
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"{stage.name.lower()} loss not finite at epoch {self._epoch()}: {self._describe_loss(loss)}. "
                "Lower the learning rate (lr) if the model diverged, or check these utterances; nothing was exported")
        return loss

    def evaluate_error_rate(self, dataset, split: str = "test", min_key: str = "error_rate") -> float:
        """Score the best checkpoint (``min_key``) on ``dataset`` (``split``, which the logs name) with
        the test decoding; the error details go to ``error_rate_file``."""
        self.scored_split = split
        self.evaluate(dataset, min_key=min_key, test_loader_kwargs=self.hparams.test_dataloader_opts)
        return float(self.test_stats["error_rate"])

    def score_best_checkpoint(self, valid_set, test_set) -> Dict[str, object]:
        """The best checkpoint's error rates on valid and test, with the same
        (test) decoding so that the two compare; test last, so that
        ``error_rate_file`` holds its details.  Also the model's folder and size."""
        result: Dict[str, object] = {"model_dir": os.path.abspath(self.hparams.model_dir)}
        for split, dataset in (("valid", valid_set), ("test", test_set)):
            result[f"{split}_error_rate"] = self.evaluate_error_rate(dataset, split)
            # The Brain's other scores of this decoding (e.g. the CIF model's CTC head, its error breakdown).
            result.update({f"{split}_{name}": round(float(value), 2) for name, value in self.test_stats.items()
                           if name in self.REPORTED_TEST_STATS})
        result["params"] = sum(p.numel() for p in self.modules.model.parameters())
        return result

    #: Test statistics, besides ``error_rate``, that :meth:`score_best_checkpoint` reports per split.
    REPORTED_TEST_STATS: Tuple[str, ...] = ()

    def kd_ramp(self) -> float:
        """The factor on the distillation weights now (``kd_ramp_updates``; 1 when 0 or absent)."""
        return ramp_factor(self.optimizer_step, int(getattr(self.hparams, "kd_ramp_updates", 0) or 0))

    def averaged_count(self) -> int:
        """``average_checkpoints``: how many of the last checkpoints are averaged for test and export (1: none,
        the best checkpoint by validation error is used)."""
        return average_count(vars(self.hparams))

    def save_checkpoint(self, meta: Dict[str, float]) -> None:
        """An end-of-epoch checkpoint; the best one and the last ``average_checkpoints`` are kept."""
        keep_checkpoints(self.checkpointer, meta, keep_last=self.averaged_count())

    def on_evaluate_start(self, max_key=None, min_key=None) -> None:
        count = self.averaged_count()
        if count == 1:
            return super().on_evaluate_start(max_key=max_key, min_key=min_key)
        # The last checkpoint's state (normaliser statistics, counters), then
        # the model's weights averaged over the last ``count`` checkpoints.
        self.checkpointer.recover_if_possible()
        folder = averaged_folder(self.hparams.output_folder)
        # One process writes the averaged folder, then every process reads it.
        run_on_main(averaged_checkpoint, args=[self.checkpointer, count, folder])
        state = torch.load(os.path.join(folder, "model.ckpt"), map_location="cpu")
        self.checkpointer.recoverables["model"].load_state_dict(state)
        logger.info("scoring the mean weights of the last %d checkpoints (%s)", len(averaged_sources(folder)), folder)

    def check_weights_finite(self) -> None:
        """Stop with :class:`DivergenceError` if any weight is NaN or inf."""
        bad = nonfinite_tensors(self.modules.state_dict())
        if bad:
            raise DivergenceError(
                f"model weights are not finite after epoch {self._epoch()} ({len(bad)} tensors, e.g. "
                f"{', '.join(bad[:3])}): training diverged; lower the learning rate (lr). Nothing was exported")

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

    @main_process_only
    def _append_history(self, entry) -> None:
        path = os.path.join(self.hparams.output_folder, "history.jsonl")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: float(v) for k, v in entry.items()}) + "\n")

    def _score_hypotheses(self, batch, hyps: List[List[int]], metrics=None) -> None:
        """Add decoded hypotheses and the batch's references to ``metrics`` (default ``error_metrics``)."""
        tokens, tokens_lens = batch.tokens
        decode = self.hparams.tokenizer.decode_ndim
        (metrics or self.error_metrics).append(batch.id, [decode(hyp) for hyp in hyps],
                                               [decode(seq) for seq in undo_padding(tokens, tokens_lens)])

    def _finish_test(self, stats) -> None:
        """Log the test statistics, keep them in ``test_stats``, write the error details."""
        self.hparams.train_logger.log_stats(stats_meta={"Epoch loaded": self.hparams.epoch_counter.current,
                                                        "split": getattr(self, "scored_split", "test")},
                                            test_stats=stats)
        self.test_stats = stats
        if if_main_process():
            with open(self.hparams.error_rate_file, "w", encoding="utf-8") as handle:
                self.error_metrics.write_stats(handle)


class CTCAttentionBrain(ProjectBrain):
    """Joint CTC/attention ASR: ``ctc_weight·CTC + (1 − ctc_weight)·NLL``.

    Validation decodes greedily, test with the beam search (with CTC scoring)
    of the YAML; both report the label error rate (PER for phones).  Each
    epoch's statistics are appended to ``<output_folder>/history.jsonl``.
    """

    def compute_forward(self, batch, stage) -> ASRStepOutput:
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        augmentation = getattr(self.hparams, "augmentation", None)
        if stage == sb.Stage.TRAIN and augmentation is not None:
            # Time-domain augmentation may change the number of samples (speed
            # perturbation); wav_lens follows, labels are unchanged.
            wavs, wav_lens = augmentation(wavs, wav_lens)
        outputs = self.modules.model(wavs, wav_lens, tokens_bos, epoch=self.hparams.epoch_counter.current)
        hyps = None
        if stage == sb.Stage.VALID:
            hyps, _, _, _ = self.hparams.valid_search(outputs.encoded.detach(), wav_lens)
        elif stage == sb.Stage.TEST:
            hyps, _, _, _ = self.hparams.test_search(outputs.encoded.detach(), wav_lens)
        return ASRStepOutput(**vars(outputs), hyps=hyps)

    def hard_losses(self, outputs: ASRStepOutput, batch):
        """The supervised CTC and attention losses (batch means)."""
        tokens, tokens_lens = batch.tokens
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        ctc = self.hparams.ctc_cost(outputs.ctc_logprobs, tokens, outputs.wav_lens, tokens_lens)
        seq = self.hparams.seq_cost(outputs.seq_logprobs, tokens_eos, length=tokens_eos_lens)
        return ctc, seq

    def combine_heads(self, ctc: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        weight = self.hparams.ctc_weight
        return weight * ctc + (1 - weight) * seq

    def compute_objectives(self, outputs: ASRStepOutput, batch, stage) -> torch.Tensor:
        ctc, seq = self.hard_losses(outputs, batch)
        self.remember_terms({"ctc": ctc, "seq": seq}, batch)
        self.track_hypotheses(outputs, batch, stage)
        if stage == sb.Stage.TRAIN:
            weight = self.hparams.ctc_weight
            self.log_gradient_norms({"ctc": weight * ctc, "seq": (1 - weight) * seq})
        return self.combine_heads(ctc, seq)

    def track_hypotheses(self, outputs: ASRStepOutput, batch, stage) -> None:
        if stage == sb.Stage.TRAIN or outputs.hyps is None:
            return
        self._score_hypotheses(batch, outputs.hyps)

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
            self.check_weights_finite()
            old_lr, new_lr = self.hparams.lr_annealing(stats["error_rate"])
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": old_lr}, train_stats=self.train_stats, valid_stats=stats
            )
            self._append_history({"epoch": epoch, "lr": old_lr, "train_loss": self.train_stats["loss"],
                                  "valid_loss": stage_loss, "valid_error_rate": stats["error_rate"]})
            self.save_checkpoint({"error_rate": stats["error_rate"]})
        else:
            self._finish_test(stats)

class DistillationBrain(CTCAttentionBrain):
    """A student distilled from several teachers (multi-teacher KD).

    Per teacher ``k`` and utterance: the CTC distillation loss (``ctc_kd``:
    ``pseudo_label``, CTC on the teacher's greedy 1-best, or ``kl``, frame
    KL with temperature) and the attention distillation loss (soft
    cross-entropy with temperature on both sides).  The strategy weights the
    teachers (see :func:`hieradist_lobes.losses.strategy_weights`); the
    attention term is normalised over all real tokens of the batch
    (``kd_normalisation: tokens``, the original's) or per utterance
    (``utterances``); then::

        L_ctc = α·KD_ctc + (1 − α)·CTC        (KD_ctc scaled by T² for ``kl``)
        L_seq = α·T²·KD_seq + (1 − α)·NLL
        L     = ctc_weight·L_ctc + (1 − ctc_weight)·L_seq

    With ``kd_ramp_updates: K`` (default 0, off), α grows linearly from 0
    over the first K updates (hard labels lead at the start).

    Validation and test use the hard losses only (no teacher outputs needed).
    """

    def distillation_losses(self, outputs: ASRStepOutput, batch):
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

        # All teachers at once, folded into the batch (row k·B + b is teacher k on utterance b): one call
        # of each loss instead of one per teacher, as the per-call cost dominates at student sizes.
        teachers, batch_size = teacher_ctc.shape[2], teacher_ctc.shape[0]

        def fold(teacher: torch.Tensor) -> torch.Tensor:  # batch × time × teachers × classes → (teachers·batch) × time × classes
            return teacher.permute(2, 0, 1, 3).flatten(0, 1)

        def repeat(student: torch.Tensor) -> torch.Tensor:
            return student.repeat(teachers, *([1] * (student.dim() - 1)))

        folded_ctc_lengths = teacher_ctc_lengths.T.reshape(-1)
        if hp.ctc_kd == "pseudo_label":
            ctc_losses = ctc_pseudo_label_loss(repeat(outputs.ctc_logprobs), repeat(student_lengths),
                                               fold(teacher_ctc), folded_ctc_lengths, hp.blank_index)
        else:
            ctc_losses = temperature**2 * frame_kl_loss(repeat(outputs.ctc_logits), fold(teacher_ctc),
                                                        repeat(student_lengths), folded_ctc_lengths, temperature)
        seq_losses = temperature**2 * soft_cross_entropy(repeat(outputs.seq_logits), fold(teacher_att),
                                                         repeat(token_lengths), temperature, reduction="sum")
        ctc_weights, att_weights = strategy_weights(
            hp.strategy, batch.teacher_ctc_error_rate.data.T, batch.teacher_att_error_rate.data.T,
            float(hp.weighted_temperature), getattr(hp, "best_ties", "first"),
        )
        kd_ctc = combine_teachers(ctc_losses.view(teachers, batch_size), ctc_weights).mean()
        kd_seq = attention_kd_loss(seq_losses.view(teachers, batch_size), token_lengths, att_weights,
                                   hp.kd_normalisation)
        return kd_ctc, kd_seq

    def compute_objectives(self, outputs: ASRStepOutput, batch, stage) -> torch.Tensor:
        ctc, seq = self.hard_losses(outputs, batch)
        self.track_hypotheses(outputs, batch, stage)
        if stage != sb.Stage.TRAIN:
            self.remember_terms({"ctc": ctc, "seq": seq}, batch)
            return self.combine_heads(ctc, seq)
        alpha = float(self.hparams.kd_alpha) * self.kd_ramp()
        kd_ctc, kd_seq = self.distillation_losses(outputs, batch)
        self.remember_terms({"ctc": ctc, "seq": seq, "kd_ctc": kd_ctc, "kd_seq": kd_seq}, batch)
        weight = self.hparams.ctc_weight
        self.log_gradient_norms({"ctc": weight * (1 - alpha) * ctc, "seq": (1 - weight) * (1 - alpha) * seq,
                                 "kd_ctc": weight * alpha * kd_ctc, "kd_seq": (1 - weight) * alpha * kd_seq})
        return self.combine_heads(alpha * kd_ctc + (1 - alpha) * ctc, alpha * kd_seq + (1 - alpha) * seq)


@dataclass
class CIFStepOutput(CIFOutputs):
    """The CIF model's outputs for a batch, and (valid/test) the decoded
    hypotheses and free-running fire counts."""

    hyps: Optional[List[List[int]]] = None
    fire_counts: Optional[torch.Tensor] = None
    ctc_hyps: Optional[List[List[int]]] = None   # the CTC head alone, greedy


class CIFBrain(ProjectBrain):
    """CIF ASR (CIF-HieraDist's model): Conformer encoder → CIF → decoder.

    Training loss, every term summed over the batch and divided by the
    number of output tokens (tokens + eos)::

        L = CE(label smoothing) + quantity_weight·|Σα − (N+1)| + ctc_weight·CTC

    The CIF weights are scaled to the target length for teacher forcing
    (quantity loss on the unscaled sum); the CTC head reads the encoder and
    its targets include eos.  Validation decodes greedily over the free
    running fires (no scaling, tail fire), test with the beam search of the
    YAML (``beam_size``); both report the token error rate.

    ``modules``: ``model`` (:class:`~hieradist_lobes.models.CIFModel`); ``hparams``: ``label_smoothing``,
    ``quantity_weight``, ``ctc_weight``, ``beam_size``, ``lr_scheduler``
    (called with the optimizer step), ``epoch_counter``, ``train_logger``,
    ``error_stats``, optionally ``feature_augmentation`` (SpecAugment) and
    ``feature_augmentation_start`` (the update it starts at; 0: the first),
    ``dynamic_chunk_training`` (SpeechBrain's ``DynChunkTrainConfigRandomSampler``: a streaming model).
    """

    def compute_forward(self, batch, stage) -> CIFStepOutput:
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        target_lengths = torch.round(tokens_eos_lens * tokens_eos.shape[1]).long()
        augmentation = None
        if stage == sb.Stage.TRAIN and self.optimizer_step >= int(getattr(self.hparams, "feature_augmentation_start",
                                                                            0) or 0):
            augmentation = getattr(self.hparams, "feature_augmentation", None)
        # Dynamic chunk training: a chunking drawn per training batch; valid/test use the streaming one.
        sampler = getattr(self.hparams, "dynamic_chunk_training", None)
        chunking = sampler(stage) if sampler is not None else None
        outputs = self.modules.model(wavs, wav_lens, tokens_bos, target_lengths,
                                     epoch=self.hparams.epoch_counter.current, feature_augmentation=augmentation,
                                     dynchunktrain_config=chunking)
        hyps = fire_counts = ctc_hyps = None
        if stage != sb.Stage.TRAIN:
            # Decoding is not a forward pass: call it on the model itself, not on its DDP wrapper.
            model = self.modules.model
            model = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
            testing = stage == sb.Stage.TEST
            hyps, fires = model.decode(outputs.encoded.detach(), wav_lens, self.hparams.tokenizer,
                                       beam_size=int(self.hparams.beam_size) if testing else 1,
                                       ctc_weight=float(getattr(self.hparams, "ctc_weight_decode", 0.0)) if testing
                                       else 0.0, dynchunktrain_config=chunking)
            fire_counts = fires.fired_lengths
            # The CTC head alone, from the log-probabilities the forward pass already computed.
            tokenizer = self.hparams.tokenizer
            ctc_hyps = ctc_greedy_decode(outputs.ctc_logprobs.detach(), outputs.frame_lengths,
                                         tokenizer.get_blank_index(),
                                         drop=[tokenizer.get_eos_index(), tokenizer.get_bos_index()])
        return CIFStepOutput(**vars(outputs), hyps=hyps, fire_counts=fire_counts, ctc_hyps=ctc_hyps)

    def loss_terms(self, outputs: CIFStepOutput, batch, stage) -> Dict[str, torch.Tensor]:
        """Each loss term, summed over the batch (before weighting)."""
        tokens_eos, _ = batch.tokens_eos
        lengths = outputs.target_lengths
        return {
            "ce": sequence_cross_entropy(outputs.logits, tokens_eos, lengths, float(self.hparams.label_smoothing)),
            "quantity": quantity_loss(outputs.cif.alpha_sum, lengths).sum(),
            "ctc": ctc_loss_sum(outputs.ctc_logprobs, outputs.frame_lengths, tokens_eos, lengths,
                                self.hparams.tokenizer.get_blank_index()),
        }

    def loss_weights(self) -> Dict[str, float]:
        return {"ce": 1.0, "quantity": float(self.hparams.quantity_weight), "ctc": float(self.hparams.ctc_weight)}

    def compute_objectives(self, outputs: CIFStepOutput, batch, stage) -> torch.Tensor:
        terms = self.loss_terms(outputs, batch, stage)
        self.remember_terms(terms, batch)
        weights = self.loss_weights()
        tokens = outputs.target_lengths.sum().clamp(min=1)
        contributions = {name: weights[name] * value / tokens for name, value in terms.items()}
        loss = sum(contributions.values())
        if stage == sb.Stage.TRAIN:
            self.log_gradient_norms(contributions)
        for name, value in terms.items():
            self.loss_parts[name] = self.loss_parts.get(name, 0.0) + float(value.detach())
        self.loss_parts["tokens"] = self.loss_parts.get("tokens", 0.0) + float(tokens)
        if stage != sb.Stage.TRAIN:
            self.track_hypotheses(outputs, batch)
        return loss

    def score_best_checkpoint(self, valid_set, test_set) -> Dict[str, object]:
        """As :meth:`ProjectBrain.score_best_checkpoint`; with
        ``ctc_weight_decode_grid``, the validation set is first decoded with
        each CTC weight and the best (lowest error rate; the smallest weight
        on a tie) becomes ``ctc_weight_decode`` for the scores and the export
        (``result["ctc_weight_decode"]``, each weight's error rate in
        ``result["valid_by_ctc_weight"]``)."""
        grid = getattr(self.hparams, "ctc_weight_decode_grid", None)
        by_weight: Dict[float, float] = {}
        for weight in grid or ():
            self.hparams.ctc_weight_decode = float(weight)
            by_weight[float(weight)] = self.evaluate_error_rate(valid_set, f"valid_ctc_weight_{float(weight):g}")
        if by_weight:
            self.hparams.ctc_weight_decode = min(by_weight, key=lambda weight: (by_weight[weight], weight))
            logger.info("ctc_weight_decode %.2f chosen on valid (%s)", self.hparams.ctc_weight_decode,
                        ", ".join(f"{weight:g}: {rate:.2f}" for weight, rate in by_weight.items()))
        chosen = float(getattr(self.hparams, "ctc_weight_decode", 0.0))
        without_ctc = None
        if chosen:
            # The decoder alone on test too, to show what the CTC scores change (scored first, so that
            # error_rate_file keeps the details of the chosen decoding).
            self.hparams.ctc_weight_decode = 0.0
            without_ctc = self.evaluate_error_rate(test_set, "test_no_ctc")
            self.hparams.ctc_weight_decode = chosen
        result = super().score_best_checkpoint(valid_set, test_set)
        result["ctc_weight_decode"] = chosen
        result["test_error_rate_no_ctc"] = result["test_error_rate"] if without_ctc is None else without_ctc
        if by_weight:
            result["valid_by_ctc_weight"] = {f"{weight:g}": round(rate, 2) for weight, rate in by_weight.items()}
        return result

    REPORTED_TEST_STATS = ("ctc_head_error_rate", "substitutions", "deletions", "insertions", "fires_exact_pct",
                           "fires_within_one_pct", "fire_count_error")

    def track_hypotheses(self, outputs: CIFStepOutput, batch) -> None:
        self._score_hypotheses(batch, outputs.hyps)
        self._score_hypotheses(batch, outputs.ctc_hyps, self.ctc_error_metrics)
        misses = (outputs.fire_counts - outputs.target_lengths).abs()
        self.fire_count_error += float(misses.sum())
        self.fires_exact += int((misses == 0).sum())
        self.fires_within_one += int((misses <= 1).sum())
        self.utterances += len(batch.id)

    def on_fit_batch_end(self, batch, outputs, loss, should_step) -> None:
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if should_step and getattr(self.hparams, "lr_scheduler", None) is not None:
            self.hparams.lr_scheduler(self.optimizer, self.optimizer_step)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        sorting = getattr(self.hparams, "train_sorting", "random")
        if sorting != "random":
            # Measured on the built-in corpus (docs/results.md, "Why seed 1235 never learnt"): with
            # ascending batches the weight predictor tracked each stretch of similar batches with its
            # bias, the training quantity loss looked fine, and the model never learnt to count
            # (free-running fires off by 4).
            logger.warning("train_sorting: %s gives the same batches in the same order every epoch; CIF's "
                           "quantity loss can then be met by following the batches' token rate instead of "
                           "counting tokens (watch valid fire_count_error). Prefer train_sorting: random, "
                           "with dynamic_batching to keep padding low.", sorting)

    def on_stage_start(self, stage, epoch=None) -> None:
        self.loss_parts: Dict[str, float] = {}
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()
            self.ctc_error_metrics = self.hparams.error_stats()  # the CTC head alone, greedy
            self.fire_count_error, self.utterances = 0.0, 0
            self.fires_exact = self.fires_within_one = 0  # utterances whose fires number their tokens (+ eos)

    def _stage_stats(self, stage_loss) -> Dict[str, float]:
        tokens = max(self.loss_parts.get("tokens", 1.0), 1.0)
        stats = {"loss": stage_loss}
        stats.update({name: value / tokens for name, value in self.loss_parts.items() if name != "tokens"})
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None) -> None:
        stats = self._stage_stats(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        summary = self.error_metrics.summarize()
        stats["error_rate"] = summary["error_rate"]
        stats.update({kind: summary[kind] for kind in ("substitutions", "deletions", "insertions")})
        stats["ctc_head_error_rate"] = self.ctc_error_metrics.summarize("error_rate")
        utterances = max(self.utterances, 1)
        stats["fire_count_error"] = self.fire_count_error / utterances
        stats["fires_exact_pct"] = 100.0 * self.fires_exact / utterances
        stats["fires_within_one_pct"] = 100.0 * self.fires_within_one / utterances
        if stage == sb.Stage.VALID:
            self.check_weights_finite()
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(stats_meta={"epoch": epoch, "lr": lr},
                                                train_stats=self.train_stats, valid_stats=stats)
            self._append_history({"epoch": epoch, "lr": lr, "train_loss": self.train_stats["loss"],
                                  **{f"train_{k}": v for k, v in self.train_stats.items() if k != "loss"},
                                  "valid_loss": stage_loss, "valid_error_rate": stats["error_rate"],
                                  "valid_fire_count_error": stats["fire_count_error"],
                                  "valid_ctc_head_error_rate": stats["ctc_head_error_rate"]})
            self.save_checkpoint({"error_rate": stats["error_rate"]})
        else:
            self._finish_test(stats)


DISTILLATIONS = ("acd", "lrd", "hieradist")
LRD_STATES = ("final", "decoder")


class HieraDistBrain(CIFBrain):
    """A CIF model distilled from a pre-trained LM's token features.

    ``batch.plm_features`` holds, per utterance, the PLM feature of each
    output token (eos: the ``[SEP]`` position), read from the teacher store.

    * ACD (``acd_proj`` module, ``acd_weight``, ``acd_negatives``,
      ``acd_temperature``): InfoNCE between ``acd_proj(c_i)`` and the PLM
      features (:func:`~hieradist_lobes.losses.acd_loss`).
    * LRD (``lrd_proj`` module, ``lrd_weight``): squared error between
      ``lrd_proj(state_i)`` and the PLM features; ``lrd_state: final`` (the
      paper's run) regresses the decoder's output bottleneck over
      ``[state_i; c_i]``, ``decoder`` the state before ``c_i`` is joined.
    * ``kd_ramp_updates: K`` (default 0, off, as the paper) ramps both
      weights linearly from 0 over the first K updates.

    ``distillation`` (``acd``, ``lrd`` or ``hieradist`` = both) chooses the
    terms; only the projections (``hparams``) of the terms in use become
    modules, so that they are trained and no parameter goes without a
    gradient under DDP.  Validation and test need no PLM features.
    """

    def __init__(self, modules=None, opt_class=None, hparams=None, *args, **kwargs) -> None:
        modules = dict(modules or {})
        choice = (hparams or {}).get("distillation")
        if choice not in DISTILLATIONS:
            raise ValueError(f"distillation must be one of {', '.join(DISTILLATIONS)}, got {choice!r}")
        lrd_state = (hparams or {}).get("lrd_state", "final")
        if lrd_state not in LRD_STATES:
            raise ValueError(f"lrd_state must be one of {', '.join(LRD_STATES)}, got {lrd_state!r}")
        for term in ("acd", "lrd"):
            if choice in ("hieradist", term):
                modules[f"{term}_proj"] = hparams[f"{term}_proj"]
        super().__init__(modules, opt_class, hparams, *args, **kwargs)

    def uses(self, term: str) -> bool:
        return self.hparams.distillation in ("hieradist", term)

    def loss_terms(self, outputs: CIFStepOutput, batch, stage) -> Dict[str, torch.Tensor]:
        terms = super().loss_terms(outputs, batch, stage)
        if stage != sb.Stage.TRAIN:
            return terms
        plm, _ = batch.plm_features
        steps = outputs.target_lengths.max()
        mask = length_mask(outputs.target_lengths, int(steps))
        teacher = plm[:, :steps][mask]
        if self.uses("acd"):
            student = self.modules.acd_proj(outputs.cif.fired[:, :steps])[mask]
            terms["acd"] = acd_loss(student, teacher, int(self.hparams.acd_negatives),
                                    float(self.hparams.acd_temperature))
        if self.uses("lrd"):
            terms["lrd"] = lrd_loss(self.modules.lrd_proj(self.lrd_states(outputs)[:, :steps])[mask], teacher)
        return terms

    def lrd_states(self, outputs: CIFStepOutput) -> torch.Tensor:
        """The decoder states that LRD regresses (``lrd_state``)."""
        return outputs.final_states if getattr(self.hparams, "lrd_state", "final") == "final" else outputs.states

    def loss_weights(self) -> Dict[str, float]:
        weights = super().loss_weights()
        ramp = self.kd_ramp()
        weights.update({"acd": ramp * float(self.hparams.acd_weight), "lrd": ramp * float(self.hparams.lrd_weight)})
        return weights


class LMBrain(ProjectBrain):
    """Token language model training (``recipes/train_lm.py``): next-token
    NLL on the transcripts; validation reports the perplexity.

    ``modules``: ``lm``; ``hparams``: ``epoch_counter``, ``train_logger``.
    """

    def averaged_count(self) -> int:
        return 1  # the LM is scored at its best checkpoint; average_checkpoints is the ASR model's

    def compute_forward(self, batch, stage) -> torch.Tensor:
        batch = batch.to(self.device)
        tokens_bos, _ = batch.tokens_bos
        return self.modules.lm(tokens_bos)

    def compute_objectives(self, logprobs, batch, stage) -> torch.Tensor:
        tokens_eos, lengths = batch.tokens_eos
        loss = sb.nnet.losses.nll_loss(logprobs, tokens_eos, length=lengths)
        self.remember_terms({"nll": loss}, batch)
        return loss

    def on_stage_end(self, stage, stage_loss, epoch=None) -> None:
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {"loss": stage_loss, "perplexity": float(torch.exp(torch.tensor(stage_loss)))}
        if stage == sb.Stage.VALID:
            self.check_weights_finite()
            self.hparams.train_logger.log_stats(stats_meta={"epoch": epoch}, train_stats={"loss": self.train_loss},
                                                valid_stats=stats)
            self._append_history({"epoch": epoch, "train_loss": self.train_loss, "valid_loss": stage_loss,
                                  "valid_perplexity": stats["perplexity"]})
            self.checkpointer.save_and_keep_only(meta={"loss": stage_loss}, min_keys=["loss"])
        else:
            self.test_stats = stats
