"""What the two kinds of teacher store hold, and how a record is written and read.

The store itself (:mod:`hieradist_lobes.teacher_store`: parts, index,
metadata, the sharded resumable writer) does not know what a record is; a
*codec* per kind owns everything that differs.

A record is stored as named arrays, its *fields*: a codec turns a record
into fields (:meth:`encode`) and fields back into a record (:meth:`decode`);
where the fields live in a part file is the store's business.

``asr`` (:class:`PosteriorCodec`, :class:`TeacherRecord`)
    CTC/attention ASR teachers (multi-teacher KD): ``ctc`` (frames of
    teacher 0 + frames of teacher 1 + ...) × classes and ``att`` (teachers ×
    (tokens + eos)) × classes, both log-posteriors (``.values`` /
    ``.indices`` with ``top_k``: the k largest per row and their classes);
    ``ctc_error_rate``, ``att_error_rate`` (per teacher, %), ``ctc_lengths``
    (frames per teacher).
``plm`` (:class:`PLMFeatureCodec`, :class:`PLMRecord`)
    A pre-trained LM's per-token features (CIF-HieraDist's teacher):
    ``plm`` (tokens + 1) × ``feature_dim``, row k the feature of ASR token
    k ([CLS] dropped), the last row the [SEP] position's (the eos fire).

Both kinds also keep ``tokens`` (the reference label indices) and
``duration`` (seconds of audio, one value).  The small fields
(:attr:`index_fields`: everything but the matrices) are what a reader keeps
in memory per part; the matrices are read from disk per utterance.

Example
-------
>>> sorted(CODECS)
['asr', 'plm']
>>> CODECS["plm"].record_type.__name__
'PLMRecord'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

import numpy as np

from hieradist_lobes.errors import ReportedError

# Log-probabilities below this are stored as this (float16 reaches -65504).
LOG_FLOOR = -1.0e4
# The largest finite float16: PLM features beyond it would be stored as inf.
FLOAT16_MAX = 65504.0


class TeacherStoreError(ReportedError, ValueError):
    """The store is missing an utterance, or its parts or metadata disagree."""


@dataclass
class TeacherRecord:
    """The outputs of every teacher for one utterance (lists indexed by teacher)."""

    ctc_logprobs: List[np.ndarray]
    att_logprobs: List[np.ndarray]
    ctc_error_rate: Sequence[float]
    att_error_rate: Sequence[float]
    tokens: Sequence[int]
    duration: float = 0.0

    def check(self, num_teachers: int, num_classes: int, utt_id: str) -> None:
        """Raise :class:`TeacherStoreError` if shapes do not fit the metadata."""
        for name in ("ctc_logprobs", "att_logprobs", "ctc_error_rate", "att_error_rate"):
            if len(getattr(self, name)) != num_teachers:
                raise TeacherStoreError(f"utterance {utt_id}: {name} has {len(getattr(self, name))} teachers, "
                                        f"the store {num_teachers}")
        for matrix in list(self.ctc_logprobs) + list(self.att_logprobs):
            if matrix.ndim != 2 or matrix.shape[1] != num_classes:
                raise TeacherStoreError(f"utterance {utt_id}: posteriors of shape {matrix.shape}, "
                                        f"expected (n, {num_classes})")
        for name in ("ctc_logprobs", "att_logprobs"):
            # -inf is a valid log-probability (stored at the floor); NaN and +inf are not.
            if any(np.isnan(m).any() or np.isposinf(m).any() for m in getattr(self, name)):
                raise TeacherStoreError(f"utterance {utt_id}: {name} contain NaN or +inf (a diverged teacher?)")
        if not np.isfinite(np.asarray(list(self.ctc_error_rate) + list(self.att_error_rate), dtype=float)).all():
            raise TeacherStoreError(f"utterance {utt_id}: non-finite error rates")
        for matrix in self.att_logprobs:
            if matrix.shape[0] != len(self.tokens) + 1:
                raise TeacherStoreError(f"utterance {utt_id}: {matrix.shape[0]} attention rows for "
                                        f"{len(self.tokens)} tokens + eos")


@dataclass
class PLMRecord:
    """A pre-trained language model's features for one utterance (``plm`` stores).

    Arguments
    ---------
    features : numpy.ndarray
        (tokens + 1) × feature_dim: row k is the teacher feature of ASR token
        k, the last row (the PLM's [SEP] position) that of the eos fire.
    tokens : sequence of int
        The ASR label indices of the utterance's PLM tokens.
    duration : float
        Seconds of audio.

    Example
    -------
    >>> record = PLMRecord(features=np.zeros((3, 4)), tokens=[5, 6], duration=1.0)
    >>> record.check(feature_dim=4, num_classes=10, utt_id="u1")
    >>> record.check(feature_dim=8, num_classes=10, utt_id="u1")
    Traceback (most recent call last):
    ...
    hieradist_lobes.store_codecs.TeacherStoreError: utterance u1: features of shape (3, 4), expected (3, 8) ...
    """

    features: np.ndarray
    tokens: Sequence[int]
    duration: float = 0.0

    def check(self, feature_dim: int, num_classes: int, utt_id: str) -> None:
        """Raise :class:`TeacherStoreError` if the record does not fit the metadata."""
        features = np.asarray(self.features)
        expected = (len(self.tokens) + 1, feature_dim)
        if features.ndim != 2 or features.shape != expected:
            raise TeacherStoreError(f"utterance {utt_id}: features of shape {features.shape}, expected "
                                    f"{expected} ({len(self.tokens)} tokens + eos, feature_dim {feature_dim})")
        bad = [int(t) for t in self.tokens if not 0 <= int(t) < num_classes]
        if bad:
            raise TeacherStoreError(f"utterance {utt_id}: label indices {bad} outside the store's "
                                    f"{num_classes} labels")
        if not np.isfinite(features).all():
            raise TeacherStoreError(f"utterance {utt_id}: features contain inf or NaN")


def _top_k(matrix: np.ndarray, k: int):
    indices = np.argpartition(-matrix, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(matrix, indices, axis=1)
    order = np.argsort(-values, axis=1)
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(indices, order, axis=1)


def expand_top_k(values: np.ndarray, indices: np.ndarray, num_classes: int) -> np.ndarray:
    """Dense log-posteriors from top-k rows; the remaining mass is spread evenly.

    Example
    -------
    >>> dense = expand_top_k(np.log([[0.6, 0.3]]), np.array([[2, 0]]), 4)
    >>> np.round(np.exp(dense), 3)
    array([[0.3 , 0.05, 0.6 , 0.05]], dtype=float32)
    """
    values = values.astype(np.float32)
    k = values.shape[1]
    rows = values.shape[0]
    if k >= num_classes:
        dense = np.empty((rows, num_classes), dtype=np.float32)
        np.put_along_axis(dense, indices.astype(np.int64), values, axis=1)
        return dense
    kept = np.exp(values).sum(axis=1, keepdims=True)
    rest = np.maximum(1.0 - kept, 1e-8) / (num_classes - k)
    dense = np.repeat(np.log(rest), num_classes, axis=1).astype(np.float32)
    np.put_along_axis(dense, indices.astype(np.int64), values, axis=1)
    return dense


def _float_type(metadata) -> type:
    return np.float16 if metadata.dtype == "float16" else np.float32


def _common_fields(record) -> Dict[str, np.ndarray]:
    return {"tokens": np.asarray(record.tokens, dtype=np.int64).reshape(-1),
            "duration": np.asarray([record.duration], dtype=np.float64)}


class PosteriorCodec:
    """``asr`` stores: the CTC and attention log-posteriors of N teachers.

    Example
    -------
    >>> meta = type("Meta", (), {"dtype": "float32", "top_k": 0, "labels": ["<blank>", "a"], "num_teachers": 1})
    >>> record = TeacherRecord(ctc_logprobs=[np.log(np.full((3, 2), 0.5))], att_logprobs=[np.zeros((2, 2))],
    ...                        ctc_error_rate=[1.0], att_error_rate=[2.0], tokens=[1], duration=0.5)
    >>> fields = PosteriorCodec().encode(record, meta)
    >>> sorted(fields)
    ['att', 'att_error_rate', 'ctc', 'ctc_error_rate', 'ctc_lengths', 'duration', 'tokens']
    >>> PosteriorCodec().decode(fields, meta).ctc_logprobs[0].shape
    (3, 2)
    """

    kind = "asr"
    record_type = TeacherRecord
    index_fields = ("tokens", "duration", "ctc_error_rate", "att_error_rate", "ctc_lengths")

    def check_metadata(self, metadata) -> None:
        """Nothing beyond the common fields."""

    def prepare(self, record: TeacherRecord, metadata, utt_id: str) -> TeacherRecord:
        """Check a record before anything of it is written."""
        record.check(metadata.num_teachers, len(metadata.labels), utt_id)
        return record

    def encode(self, record: TeacherRecord, metadata) -> Dict[str, np.ndarray]:
        """The arrays to store (in the store's dtype; log-posteriors floored at :data:`LOG_FLOOR`)."""
        # All teachers in one matrix per head: few arrays per utterance.
        return {
            **self._encode_matrix("ctc", np.concatenate(record.ctc_logprobs), metadata),
            **self._encode_matrix("att", np.concatenate(record.att_logprobs), metadata),
            "ctc_error_rate": np.asarray(record.ctc_error_rate, dtype=np.float32),
            "att_error_rate": np.asarray(record.att_error_rate, dtype=np.float32),
            "ctc_lengths": np.asarray([m.shape[0] for m in record.ctc_logprobs], dtype=np.int64),
            **_common_fields(record),
        }

    @staticmethod
    def _encode_matrix(name: str, matrix: np.ndarray, metadata) -> Dict[str, np.ndarray]:
        dtype = _float_type(metadata)
        matrix = np.maximum(np.asarray(matrix, dtype=np.float32), LOG_FLOOR)
        if metadata.top_k and metadata.top_k < matrix.shape[1]:
            values, indices = _top_k(matrix, metadata.top_k)
            index_type = np.int16 if matrix.shape[1] < 2**15 else np.int32
            return {f"{name}.values": values.astype(dtype), f"{name}.indices": indices.astype(index_type)}
        return {name: matrix.astype(dtype)}

    def decode(self, fields: Mapping[str, np.ndarray], metadata) -> TeacherRecord:
        """The record of :meth:`encode`'s fields: dense float32 log-posteriors."""
        boundaries = np.cumsum(fields["ctc_lengths"])[:-1]
        return TeacherRecord(
            ctc_logprobs=np.split(self._decode_matrix(fields, "ctc", metadata), boundaries),
            att_logprobs=np.split(self._decode_matrix(fields, "att", metadata), metadata.num_teachers),
            ctc_error_rate=fields["ctc_error_rate"].tolist(),
            att_error_rate=fields["att_error_rate"].tolist(),
            tokens=fields["tokens"].tolist(),
            duration=float(fields["duration"][0]),
        )

    @staticmethod
    def _decode_matrix(fields: Mapping[str, np.ndarray], name: str, metadata) -> np.ndarray:
        if name in fields:
            return fields[name].astype(np.float32)
        return expand_top_k(fields[f"{name}.values"], fields[f"{name}.indices"], len(metadata.labels))

    def arrays(self, record: TeacherRecord) -> List[np.ndarray]:
        """The values that must be finite when read back."""
        return list(record.ctc_logprobs) + list(record.att_logprobs)

    def summary(self, store, size: int) -> Dict[str, object]:
        """Mean error rates per teacher and split, top-k, frame rate, size per hour and teacher."""
        teachers = store.metadata.num_teachers

        def add_error_rates(entry, fields):
            for head in ("ctc", "att"):
                entry[head] = entry[head] + fields[f"{head}_error_rate"]

        splits, hours = store.split_totals(add_error_rates, ctc=np.zeros(teachers), att=np.zeros(teachers))
        for entry in splits.values():
            for head in ("ctc", "att"):
                entry[f"mean_{head}_error_rate"] = [round(x / max(entry["utterances"], 1), 2)
                                                    for x in entry.pop(head)]
        return {"splits": splits, "top_k": store.metadata.top_k, "frame_rate": store.metadata.frame_rate,
                "megabytes_per_hour_per_teacher": round(size / 2**20 / max(hours, 1e-9) / max(teachers, 1), 2)}

    def format_summary(self, summary: Dict[str, object]) -> str:
        lines = [f"teacher store {summary['path']}",
                 f"  classes {summary['classes']}, dtype {summary['dtype']}, "
                 f"top-k {summary['top_k'] or 'full'}, CTC frame rate {summary['frame_rate']:g}/s",
                 f"  size {summary['size_bytes'] / 2**20:.1f} MiB "
                 f"({summary['megabytes_per_hour_per_teacher']} MiB per hour of audio per teacher)"]
        for split, entry in summary["splits"].items():
            lines.append(f"  {split}: {entry['utterances']} utterances, {entry['hours']} h")
            for k, name in enumerate(summary["teachers"]):
                lines.append(f"    {name}: CTC error rate {entry['mean_ctc_error_rate'][k]:.2f}%, "
                             f"attention error rate {entry['mean_att_error_rate'][k]:.2f}%")
        return "\n".join(lines)


class PLMFeatureCodec:
    """``plm`` stores: a pre-trained LM's feature of each token."""

    kind = "plm"
    record_type = PLMRecord
    index_fields = ("tokens", "duration")

    def check_metadata(self, metadata) -> None:
        if int(metadata.feature_dim) <= 0:
            raise ValueError(f"a plm store needs feature_dim > 0, got {metadata.feature_dim}")
        if metadata.top_k:
            raise ValueError("top_k applies to posteriors, not to plm features; use top_k=0")

    def prepare(self, record: PLMRecord, metadata, utt_id: str) -> PLMRecord:
        """Check a record and convert its features to the store's dtype, before anything is written."""
        record.check(metadata.feature_dim, len(metadata.labels), utt_id)
        features = np.asarray(record.features, dtype=np.float32)
        if metadata.dtype == "float16" and np.abs(features).max(initial=0.0) > FLOAT16_MAX:
            # Unlike log-posteriors, features have no meaningful floor: refuse rather than store inf.
            raise TeacherStoreError(f"utterance {utt_id}: a feature exceeds the float16 range "
                                    f"(|x| = {np.abs(features).max():.4g}); use dtype float32")
        return PLMRecord(features=features.astype(_float_type(metadata)), tokens=record.tokens,
                         duration=record.duration)

    def encode(self, record: PLMRecord, metadata) -> Dict[str, np.ndarray]:
        """The arrays to store (a :meth:`prepare`\ d record's features are in the store's dtype)."""
        return {"plm": np.asarray(record.features, dtype=_float_type(metadata)), **_common_fields(record)}

    def decode(self, fields: Mapping[str, np.ndarray], metadata) -> PLMRecord:
        """The record of :meth:`encode`'s fields, float32 features."""
        return PLMRecord(features=fields["plm"].astype(np.float32), tokens=fields["tokens"].tolist(),
                         duration=float(fields["duration"][0]))

    def arrays(self, record: PLMRecord) -> List[np.ndarray]:
        return [record.features]

    def summary(self, store, size: int) -> Dict[str, object]:
        """Tokens per split, feature size, size per hour."""
        def count_tokens(entry, fields):
            entry["tokens"] += len(fields["tokens"])

        splits, hours = store.split_totals(count_tokens, tokens=0)
        return {"splits": splits, "feature_dim": store.metadata.feature_dim,
                "megabytes_per_hour": round(size / 2**20 / max(hours, 1e-9), 2)}

    def format_summary(self, summary: Dict[str, object]) -> str:
        lines = [f"teacher store {summary['path']} (PLM features of {', '.join(summary['teachers'])})",
                 f"  classes {summary['classes']}, feature dim {summary['feature_dim']}, dtype {summary['dtype']}",
                 f"  size {summary['size_bytes'] / 2**20:.1f} MiB ({summary['megabytes_per_hour']} MiB per hour "
                 "of audio)"]
        for split, entry in summary["splits"].items():
            lines.append(f"  {split}: {entry['utterances']} utterances, {entry['hours']} h, "
                         f"{entry['tokens']} tokens")
        return "\n".join(lines)


#: The codec of each store kind (the metadata's ``kind``).
CODECS = {codec.kind: codec for codec in (PosteriorCodec(), PLMFeatureCodec())}
