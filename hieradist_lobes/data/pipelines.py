"""SpeechBrain datasets from the project's manifests.

Each utterance provides ``sig`` (the waveform), ``tokens`` (label indices),
``tokens_bos`` and ``tokens_eos`` (for the attention decoder) and, when a
teacher store is given, the teachers' outputs for that utterance, read by ID
inside the DataLoader workers (:class:`TeacherItems`).

Example
-------
>>> from hieradist_lobes.tokens import build_label_encoder
>>> encoder = build_label_encoder("phn", "phones39")
>>> items = label_items(encoder, "phn")
>>> out = items("k ae t")
>>> [t.tolist() for t in (out["tokens"], out["tokens_bos"], out["tokens_eos"])]
[[22, 4, 34], [1, 22, 4, 34], [22, 4, 34, 2]]
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler

from hieradist_lobes.data.manifest import data_root, expand_data_root, manifest_data
from hieradist_lobes.teacher_store import TeacherStore, TeacherStoreError
from hieradist_lobes.tokens import LabelTokenizer

logger = logging.getLogger(__name__)

SORTINGS = ("random", "ascending", "descending")


def label_items(label_encoder: LabelTokenizer, unit: str,
                split_labels: Optional[Callable[[str], Sequence[str]]] = None,
                ) -> Callable[[str], Dict[str, torch.Tensor]]:
    """A function from a manifest label string to the token tensors.

    ``split_labels`` turns the manifest text into labels (default: split on
    spaces; CIF models use a pre-trained LM's tokenizer).
    """
    bos, eos = label_encoder.get_bos_index(), label_encoder.get_eos_index()
    split_labels = split_labels or str.split

    def encode(text: str) -> Dict[str, torch.Tensor]:
        tokens = torch.LongTensor(label_encoder.encode_sequence(list(split_labels(text))))
        return {
            "tokens": tokens,
            "tokens_bos": torch.cat([torch.LongTensor([bos]), tokens]),
            "tokens_eos": torch.cat([tokens, torch.LongTensor([eos])]),
        }

    return encode


def read_signal(utt_id: str, wav: str, sample_rate: int = 16000, resample: bool = False,
                mix_down: bool = False, data_root: Optional[str] = None, duration: Optional[float] = None,
                duration_tolerance: float = 0.05) -> torch.Tensor:
    """The mono waveform of one utterance at ``sample_rate``.

    ``$data_root`` in the path stands for ``data_root`` (SpeechBrain's
    manifest convention).

    Other rates are resampled and several channels averaged only when the
    YAML says so (``resample``, ``mix_down``). Every read checks again what
    the manifest check promised, since a file can change after it: the
    rate, the channels, the manifest's ``duration`` (within
    ``duration_tolerance`` seconds), and that every sample is finite (a
    float wav can hold NaN or inf, which no header shows). Any of these,
    or a file that cannot be read, stops with a :class:`ManifestError`
    naming the utterance and the file.

    Example
    -------
    >>> import os, tempfile, numpy, soundfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, numpy.zeros(8000), 8000)
    >>> try:
    ...     read_signal("u1", path, duration=1.0)
    ... except Exception as error:
    ...     print(str(error).startswith(f"utterance u1: {path} is 8000 Hz, the model expects 16000 Hz"))
    True
    """
    import soundfile

    from hieradist_lobes.data.manifest import ManifestError

    wav = expand_data_root(wav, data_root)
    try:
        # soundfile, not SpeechBrain's read_audio: it returns the file's rate with the samples (one open).
        samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for bad files
        raise ManifestError(f"utterance {utt_id}: cannot read {wav}: {error}") from error
    name = wav
    changed = "; did the file change after the manifest check? Fix or restore it (the check runs again)"
    if samples.shape[1] != 1 and not mix_down:
        raise ManifestError(f"utterance {utt_id}: {name} has {samples.shape[1]} channels; the model expects "
                            f"mono{changed}, or set mix_down: True")
    if rate != sample_rate and not resample:
        raise ManifestError(f"utterance {utt_id}: {name} is {rate} Hz, the model expects {sample_rate} Hz"
                            f"{changed}, or set resample: True")
    if samples.shape[0] == 0:
        raise ManifestError(f"utterance {utt_id}: {name} holds no samples")
    if duration is not None and abs(samples.shape[0] / rate - duration) > duration_tolerance:
        raise ManifestError(f"utterance {utt_id}: {name} lasts {samples.shape[0] / rate:.3f} s, the manifest "
                            f"says {duration:g} s{changed}")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(finite.size - finite.sum())
        raise ManifestError(f"utterance {utt_id}: {name} holds {bad} non-finite sample(s) (NaN or inf), first at "
                            f"{np.argmin(finite.all(axis=1)) / rate:.3f} s: re-export the audio, or leave the "
                            "utterance out of the manifest")
    signal = torch.from_numpy(samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0])
    if rate != sample_rate:
        import torchaudio

        signal = torchaudio.functional.resample(signal, rate, sample_rate)
    return signal


def read_checked(store: TeacherStore, utt_id: str, tokens: torch.Tensor, hint: str):
    """The store's record of ``utt_id``, whose reference tokens must equal the student's."""
    record = store.get(utt_id)
    if list(record.tokens) != tokens.tolist():
        raise TeacherStoreError(
            f"utterance {utt_id}: the teacher store's reference labels {list(record.tokens)} differ from "
            f"the student's {tokens.tolist()} ({hint})"
        )
    return record


class TeacherItems:
    """Reads the teachers' outputs of one utterance from a store, by ID.

    Called inside DataLoader workers; :class:`TeacherStore` opens its HDF5
    files lazily in each worker.  The reference tokens stored with the teacher
    outputs must equal the student's: a mismatch means different labels or
    vocabulary, and stops with an error naming the utterance.

    Returns a dict with ``teacher_ctc`` (frames × teachers × classes, padded
    to the teacher with most frames), ``teacher_ctc_lengths`` (teachers),
    ``teacher_att`` (tokens+eos × teachers × classes),
    ``teacher_ctc_error_rate`` and ``teacher_att_error_rate`` (teachers).
    Time comes first so that SpeechBrain's ``PaddedBatch`` pads it.
    """

    def __init__(self, store: TeacherStore) -> None:
        self.store = store

    def __call__(self, utt_id: str, tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        record = read_checked(self.store, utt_id, tokens, "other manifest or label vocabulary?")
        lengths = [m.shape[0] for m in record.ctc_logprobs]
        ctc = torch.zeros(max(lengths), len(lengths), record.ctc_logprobs[0].shape[1])
        for k, matrix in enumerate(record.ctc_logprobs):
            ctc[: matrix.shape[0], k] = torch.from_numpy(matrix)
        return {
            "teacher_ctc": ctc,
            "teacher_ctc_lengths": torch.LongTensor(lengths),
            "teacher_att": torch.from_numpy(np.stack(record.att_logprobs, axis=1)),
            "teacher_ctc_error_rate": torch.tensor(record.ctc_error_rate, dtype=torch.float32),
            "teacher_att_error_rate": torch.tensor(record.att_error_rate, dtype=torch.float32),
        }


class PLMFeatureItems:
    """Reads the PLM token features of one utterance from a store, by ID.

    Gives ``plm_features``: (tokens + 1) × feature size, the last row for
    ``<eos>`` (the PLM's ``[SEP]``).  As for :class:`TeacherItems`, the
    stored tokens must equal the student's, or the error names the utterance.
    """

    def __init__(self, store: TeacherStore) -> None:
        self.store = store

    def __call__(self, utt_id: str, tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        record = read_checked(self.store, utt_id, tokens, "other manifest, PLM tokenizer or label vocabulary?")
        return {"plm_features": torch.from_numpy(record.features.astype(np.float32))}


PLM_KEYS = ("plm_features",)

TEACHER_KEYS = ("teacher_ctc", "teacher_ctc_lengths", "teacher_att", "teacher_ctc_error_rate",
                "teacher_att_error_rate")


def asr_dataset(
    manifest: str,
    label_encoder: LabelTokenizer,
    unit: str,
    sorting: str = "random",
    teacher_store: Optional[TeacherStore] = None,
    skip_missing_teacher_outputs: bool = False,
    max_duration: Optional[float] = None,
    split_labels: Optional[Callable[[str], Sequence[str]]] = None,
    teacher_items: Optional[Callable] = None,
    teacher_keys: Sequence[str] = TEACHER_KEYS,
    audio: Optional[Dict[str, object]] = None,
) -> DynamicItemDataset:
    """A dataset over one manifest.

    Arguments
    ---------
    manifest : str
        CSV with the columns of :data:`~hieradist_lobes.data.manifest.MANIFEST_FIELDS`.
    label_encoder : LabelTokenizer
        The label vocabulary.
    unit : str
        Manifest column holding the labels (``phn``, ``char``, ``wrd``).
    sorting : str
        ``random`` (keep order, let the sampler shuffle), ``ascending`` or
        ``descending`` by duration.
    teacher_store : TeacherStore, optional
        Adds the teachers' outputs (:class:`TeacherItems`).
    skip_missing_teacher_outputs : bool
        Drop utterances absent from the store instead of stopping.
    max_duration : float, optional
        Drop utterances longer than this (seconds).
    split_labels : callable, optional
        Manifest text to labels (default: split on spaces).
    teacher_items, teacher_keys : optional
        How to read the store (default :class:`TeacherItems`, giving
        :data:`TEACHER_KEYS`); PLM feature stores give other keys.
    audio : dict, optional
        Keyword arguments of :func:`read_signal` (``sample_rate``,
        ``resample``, ``mix_down``).
    """
    if sorting not in SORTINGS:
        raise ValueError(f"sorting must be one of {', '.join(SORTINGS)}, got {sorting!r}")
    # Not from_csv: its $-substitution fails on a "$" in a transcript, and it reads no BOM.
    dataset = DynamicItemDataset(manifest_data(manifest))
    encode = label_items(label_encoder, unit, split_labels)

    audio = dict(audio or {})

    @sb.utils.data_pipeline.takes("id", "wav", "duration")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(utt_id, wav, duration):
        return read_signal(utt_id, wav, duration=duration, **audio)

    @sb.utils.data_pipeline.takes(unit)
    @sb.utils.data_pipeline.provides("tokens", "tokens_bos", "tokens_eos")
    def label_pipeline(text):
        out = encode(text)
        yield out["tokens"]
        yield out["tokens_bos"]
        yield out["tokens_eos"]

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(label_pipeline)
    keys = ["id", "sig", "tokens", "tokens_bos", "tokens_eos"]

    if teacher_store is not None:
        missing = [utt for utt in dataset.data_ids if utt not in teacher_store]
        if missing and skip_missing_teacher_outputs:
            logger.warning("%d of %d utterances of %s have no teacher outputs in %s and are left out "
                           "(skip_missing_teacher_outputs), e.g. %s", len(missing), len(dataset.data_ids), manifest,
                           teacher_store.path, ", ".join(missing[:3]))
        if missing and not skip_missing_teacher_outputs:
            raise TeacherStoreError(
                f"{len(missing)} utterance(s) of {manifest} are not in the teacher store {teacher_store.path}, "
                f"e.g. {', '.join(missing[:3])}; run save_teachers.py on this manifest, or set "
                "skip_missing_teacher_outputs: True"
            )
        reader = teacher_items or TeacherItems(teacher_store)
        teacher_keys = list(teacher_keys)

        @sb.utils.data_pipeline.takes("id", "tokens")
        @sb.utils.data_pipeline.provides(*teacher_keys)
        def teacher_pipeline(utt_id, tokens):
            out = reader(utt_id, tokens)
            for key in teacher_keys:
                yield out[key]

        dataset.add_dynamic_item(teacher_pipeline)
        keys += teacher_keys

    dataset.set_output_keys(keys)
    key_test = {}
    if teacher_store is not None and skip_missing_teacher_outputs:
        key_test["id"] = lambda utt: utt in teacher_store
    if max_duration:
        longer = sum(1 for entry in dataset.data.values() if float(entry["duration"]) > max_duration)
        if longer:
            logger.warning("%d of %d utterances of %s are longer than max_duration %g s and are left out",
                           longer, len(dataset.data), manifest, max_duration)
    if sorting != "random" or max_duration or key_test:
        dataset = dataset.filtered_sorted(
            sort_key="duration" if sorting != "random" else None,
            reverse=sorting == "descending",
            key_max_value={"duration": max_duration} if max_duration else {},
            key_test=key_test,
        )
    return dataset


def audio_options(hparams: Mapping[str, object]) -> Dict[str, object]:
    """How a recipe reads audio (:func:`read_signal`): the model's rate, and
    whether to resample or mix down (explicit YAML choices, never silent)."""
    return {"sample_rate": int(hparams["sample_rate"]), "resample": bool(hparams["resample"]),
            "mix_down": bool(hparams["mix_down"]), "data_root": data_root(hparams),
            "duration_tolerance": float(hparams.get("duration_tolerance", 0.05))}


def asr_datasets(hparams: Mapping[str, object], manifests: Mapping[str, str], tokenizer: LabelTokenizer,
                 split_labels: Optional[Callable[[str], Sequence[str]]] = None,
                 teacher_store: Optional[TeacherStore] = None, teacher_items: Optional[Callable] = None,
                 teacher_keys: Sequence[str] = TEACHER_KEYS) -> Dict[str, DynamicItemDataset]:
    """The recipes' train, valid and test datasets (SpeechBrain's ``dataio_prepare``).

    The YAML gives ``unit``, ``train_sorting``, ``max_duration`` (train and
    valid; the test set is scored whole) and the audio options; only the
    training set reads the teacher store.
    """
    unit = hparams["unit"]
    audio = audio_options(hparams)
    common = {"max_duration": hparams.get("max_duration"), "split_labels": split_labels, "audio": audio}
    return {
        "train": asr_dataset(manifests["train"], tokenizer, unit, hparams.get("train_sorting", "random"),
                             teacher_store=teacher_store,
                             skip_missing_teacher_outputs=bool(hparams.get("skip_missing_teacher_outputs", False)),
                             teacher_items=teacher_items, teacher_keys=teacher_keys, **common),
        "valid": asr_dataset(manifests["valid"], tokenizer, unit, "ascending", **common),
        "test": asr_dataset(manifests["test"], tokenizer, unit, "ascending", split_labels=split_labels, audio=audio),
    }


def train_loader_options(hparams: Mapping[str, object], train_set=None) -> Dict[str, object]:
    """``train_dataloader_opts``, without shuffling when the YAML sorts the
    training set (a sorted order is the point of sorting).

    With ``dynamic_batching`` (a mapping of SpeechBrain's
    ``DynamicBatchSampler`` arguments, ``max_batch_length`` in seconds of
    audio), batches hold about that much audio each instead of
    ``batch_size`` utterances, as fairseq's ``--max-tokens``; ``train_set``
    is then required.

    Example
    -------
    >>> train_loader_options({"train_dataloader_opts": {"batch_size": 8, "shuffle": True},
    ...                       "train_sorting": "ascending"})
    {'batch_size': 8, 'shuffle': False}
    """
    options = dict(hparams["train_dataloader_opts"])
    sorted_order = hparams.get("train_sorting", "random") != "random"
    if sorted_order:
        options["shuffle"] = False
    dynamic = hparams.get("dynamic_batching")
    if dynamic:
        if train_set is None:
            raise ValueError("dynamic_batching needs the training set to measure its utterances")
        if sorted_order:
            raise ValueError("dynamic_batching groups utterances by duration itself: set train_sorting: random")
        dynamic = dict(dynamic)
        if "max_batch_length" not in dynamic:
            raise ValueError("dynamic_batching needs max_batch_length (seconds of audio per batch)")
        options.pop("batch_size", None)
        options.pop("shuffle", None)
        options["batch_sampler"] = DynamicBatchSampler(train_set, length_func=lambda item: float(item["duration"]),
                                                       **dynamic)
    return options
