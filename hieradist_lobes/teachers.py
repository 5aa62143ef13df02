"""Teacher inference: rebuild trained teachers from their folders, run them
over a manifest and fill a :mod:`~hieradist_lobes.teacher_store`.

Each teacher is loaded from its own model folder (its architecture, weights,
normaliser statistics and vocabulary; nothing is repeated in the
``save_teachers`` YAML), in eval mode, without gradients.  Per utterance it
gives the CTC log-posteriors, the attention decoder's log-posteriors
teacher-forced on the reference, and two error rates measured by *decoding*:
greedy CTC and free (not teacher-forced) greedy attention decoding.

Work is keyed by utterance ID and done in fixed batches
(:func:`~hieradist_lobes.teacher_store.plan_batches`: longest first, batch
``i`` to process ``i % world_size`` under ``torchrun``); each process writes
its own store parts, which hold whole batches.  Utterances already in the
store are skipped, so a killed run resumes, to exactly the store an
uninterrupted run makes, and a finished one does nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from speechbrain.decoders.seq2seq import S2SRNNGreedySearcher
from speechbrain.inference.ASR import EncoderDecoderASR
from speechbrain.utils.edit_distance import wer_details_for_batch

from hieradist_lobes.data.pipelines import asr_dataset
from hieradist_lobes.files import file_sha256
from hieradist_lobes.export import nonfinite_tensors, read_info
from hieradist_lobes.losses import greedy_ctc_targets
from hieradist_lobes.subwords import folder_splitter, splitter_identity
from hieradist_lobes.models import CTCAttentionModel
from hieradist_lobes.teacher_store import StoreMetadata, TeacherRecord, TeacherStoreError, TeacherStoreWriter, fill_store
from hieradist_lobes.tokens import LabelTokenizer

logger = logging.getLogger(__name__)

# Error rates are capped, as in the original recipe, so that one runaway
# hypothesis cannot dominate a teacher's mean.
MAX_ERROR_RATE = 100.0


class Teacher:
    """A trained CTC/attention model folder, ready for inference.

    Arguments
    ---------
    folder : str
        A model folder written by :func:`hieradist_lobes.export.export_model_folder`.
    device : str
        ``cpu`` or ``cuda[:n]``.
    """

    def __init__(self, folder: str, device: str = "cpu") -> None:
        if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
            raise FileNotFoundError(f"teacher folder {folder} has no hyperparams.yaml (not a model folder?)")
        self.folder = os.path.abspath(folder)
        info_path = os.path.join(self.folder, "info.json")
        self.name = read_info(self.folder).get("name", self.folder) if os.path.isfile(info_path) else self.folder
        self.asr = EncoderDecoderASR.from_hparams(source=self.folder, savedir=self.folder,
                                                  run_opts={"device": device})
        self.asr.eval()
        self.model: CTCAttentionModel = self.asr.mods.model
        # The model's own tensors: the interface's modules hold it twice more (encoder, decoder).
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:
            raise TeacherStoreError(f"teacher {self.folder} has non-finite weights ({len(bad)} tensors, e.g. "
                                    f"{', '.join(bad[:3])}): its training diverged; it cannot be a teacher")
        self.device = device
        self.tokenizer: LabelTokenizer = self.asr.hparams.tokenizer
        # How a transcript becomes this teacher's labels: its folder's SentencePiece model, or the column split at spaces.
        self.split_labels = folder_splitter(self.folder)
        self.greedy = S2SRNNGreedySearcher(
            embedding=self.model.emb, decoder=self.model.dec, linear=self.model.seq_lin,
            bos_index=self.tokenizer.get_bos_index(), eos_index=self.tokenizer.get_eos_index(),
            min_decode_ratio=0.0, max_decode_ratio=1.0,
        )

    def description(self) -> Dict[str, str]:
        return {"name": self.name, "source": self.folder,
                "checkpoint_sha256": file_sha256(os.path.join(self.folder, "model.ckpt"))}

    @torch.no_grad()
    def outputs(self, wavs: torch.Tensor, wav_lens: torch.Tensor, tokens: torch.Tensor, tokens_lens: torch.Tensor,
                tokens_bos: torch.Tensor) -> Dict[str, list]:
        """Per-utterance outputs of this teacher for a padded batch.

        ``tokens_lens`` are absolute label counts.  Returns lists (one item per
        utterance) under ``ctc`` (frames × classes), ``att`` ((labels + 1) ×
        classes), ``ctc_error_rate`` and ``att_error_rate``.
        """
        wavs, wav_lens = wavs.to(self.device), wav_lens.to(self.device)
        out = self.model(wavs, wav_lens, tokens_bos.to(self.device))
        ctc, att = out.ctc_logprobs, out.seq_logprobs
        frames = torch.round(wav_lens * ctc.shape[1]).long().clamp(1, ctc.shape[1])
        ctc_best, ctc_best_lens = greedy_ctc_targets(ctc, frames, self.tokenizer.get_blank_index())
        att_hyps, _, _, _ = self.greedy(out.encoded, wav_lens)

        references = [tokens[i, : tokens_lens[i]].tolist() for i in range(tokens.shape[0])]
        ctc_hyps = [ctc_best[i, : ctc_best_lens[i]].tolist() for i in range(tokens.shape[0])]
        ids = list(range(tokens.shape[0]))
        return {
            "ctc": [ctc[i, : frames[i]].float().cpu().numpy() for i in ids],
            "att": [att[i, : tokens_lens[i] + 1].float().cpu().numpy() for i in ids],
            "ctc_error_rate": _error_rates(references, ctc_hyps),
            "att_error_rate": _error_rates(references, [list(h) for h in att_hyps]),
        }


def _error_rates(references: List[List[int]], hypotheses: List[List[int]]) -> List[float]:
    details = wer_details_for_batch(list(range(len(references))), references, hypotheses)
    return [min(float(d["WER"]), MAX_ERROR_RATE) for d in details]


def check_same_vocabulary(teachers: Sequence[Teacher]) -> List[str]:
    """All teachers must share one label vocabulary; return it."""
    reference = teachers[0].tokenizer.labels()
    for teacher in teachers[1:]:
        if teacher.tokenizer.labels() != reference:
            raise TeacherStoreError(f"teacher {teacher.folder} has a different label vocabulary from "
                                    f"{teachers[0].folder}")
        # The same pieces can cut a transcript differently under another SentencePiece model.
        if splitter_identity(teacher.split_labels) != splitter_identity(teachers[0].split_labels):
            raise TeacherStoreError(f"teacher {teacher.folder} cuts transcripts into labels with another "
                                    f"SentencePiece model than {teachers[0].folder}: train the teachers on one "
                                    "(one sentencepiece_folder and training manifest)")
    return reference


def teacher_folders(hparams: Mapping[str, object]) -> List[str]:
    """The teacher model folders of a ``save_teachers`` YAML:
    ``teacher_list_file`` (one per line) or ``teacher_dirs``."""
    from hieradist_lobes.hparams import HparamsError

    list_file = hparams.get("teacher_list_file")
    if list_file:
        if not os.path.isfile(list_file):
            raise HparamsError(f"teacher_list_file {list_file} does not exist")
        with open(list_file, encoding="utf-8") as handle:
            folders = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    else:
        folders = list(hparams.get("teacher_dirs") or [])
    if not folders:
        raise HparamsError("no teachers: set teacher_dirs or teacher_list_file")
    missing = [folder for folder in folders if not os.path.isfile(os.path.join(folder, "hyperparams.yaml"))]
    if missing:
        raise HparamsError(f"not a trained model folder (no hyperparams.yaml): {', '.join(missing)}")
    return folders


def save_teacher_outputs(
    teachers: Sequence[Teacher],
    manifest: str,
    split: str,
    store_path: str,
    unit: str,
    batch_size: int = 8,
    dtype: str = "float16",
    top_k: int = 0,
    rank: int = 0,
    world_size: int = 1,
    part_size: int = 256,
    options: Optional[Dict[str, object]] = None,
    progress: bool = True,
    audio: Optional[Dict[str, object]] = None,
    compression: Optional[str] = None,
) -> int:
    """Run every teacher over ``manifest`` and store the outputs by utterance ID.

    ``audio``: how to read the audio (:func:`~hieradist_lobes.data.pipelines.read_signal`).
    ``compression``: ``gzip`` or ``lzf`` for the stored matrices (:class:`TeacherStoreWriter`).

    Returns
    -------
    int
        The number of utterances this process added (0 when all were done).
    """
    from speechbrain.dataio.batch import PaddedBatch

    labels = check_same_vocabulary(teachers)
    tokenizer = teachers[0].tokenizer
    dataset = asr_dataset(manifest, tokenizer, unit, sorting="random", split_labels=teachers[0].split_labels,
                          audio=audio)
    metadata = StoreMetadata(labels=labels, teachers=[t.description() for t in teachers], frame_rate=0.0,
                             dtype=dtype, top_k=top_k, options=dict(options or {}, unit=unit))
    metadata.frame_rate = _frame_rate(teachers[0])
    durations = {utt: float(dataset.data[utt]["duration"]) for utt in dataset.data_ids}
    position = {utt: index for index, utt in enumerate(dataset.data_ids)}

    def records_of(batches: List[List[str]]):
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=[[position[u] for u in b] for b in batches],
                                             collate_fn=PaddedBatch)
        for batch in loader:
            wavs, wav_lens = batch.sig
            tokens, tokens_rel = batch.tokens
            tokens_lens = torch.round(tokens_rel * tokens.shape[1]).long()
            tokens_bos, _ = batch.tokens_bos
            per_teacher = [t.outputs(wavs, wav_lens, tokens, tokens_lens, tokens_bos) for t in teachers]
            yield {utt: TeacherRecord(
                ctc_logprobs=[out["ctc"][i] for out in per_teacher],
                att_logprobs=[out["att"][i] for out in per_teacher],
                ctc_error_rate=[out["ctc_error_rate"][i] for out in per_teacher],
                att_error_rate=[out["att_error_rate"][i] for out in per_teacher],
                tokens=tokens[i, : tokens_lens[i]].tolist(),
                duration=durations[utt],
            ) for i, utt in enumerate(batch.id)}

    writer = TeacherStoreWriter(store_path, split, metadata, rank=rank, part_size=part_size, compression=compression)
    return fill_store(writer, durations, batch_size, world_size, records_of, f"teachers on {split}", progress)


# The frame rate is measured on this much silence: a property of the teachers, the same whatever the
# manifest (on its first utterance, edge frames made it depend on that utterance's length).
FRAME_RATE_SECONDS = 20.0


def _frame_rate(teacher: Teacher) -> float:
    """CTC frames per second of audio of ``teacher``, measured on :data:`FRAME_RATE_SECONDS` of silence."""
    rate = int(teacher.asr.hparams.sample_rate)
    with torch.no_grad():
        encoded = teacher.model.encode(torch.zeros(1, int(FRAME_RATE_SECONDS * rate), device=teacher.device),
                                       torch.ones(1, device=teacher.device))
    return round(encoded.shape[1] / FRAME_RATE_SECONDS, 3)