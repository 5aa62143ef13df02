"""SentencePiece units for the CTC/attention system: trained once per training set, then reused.

A YAML with ``label_set: sentencepiece`` has its transcripts (the manifest
column ``unit``, e.g. ``wrd``) cut into SentencePiece pieces.  The model is
trained with SpeechBrain's tokenizer (:class:`speechbrain.tokenizers.SentencePiece.SentencePiece`)
on the training manifest, once, into ``sentencepiece_folder`` (beside the
manifests); every later run (each teacher, the store, the student) reuses it.
Its ids follow the project's convention: 0 the CTC blank (SentencePiece's pad
piece, never produced by encoding), 1 ``<bos>``, 2 ``<eos>``, 3 ``<unk>``, then
the pieces; the label vocabulary lists them in id order, so that a label index
is the piece's SentencePiece id.

Where this departs from SpeechBrain's tokenizer: it reuses a model only if it
was trained on the same transcripts with the same settings (a record beside
it says so; SpeechBrain reuses whatever model file is there), trains in a
staging folder so that a crash leaves no half model, and one process trains
while runs started side by side wait for it.

Example
-------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> manifest = os.path.join(folder, "train.csv")
>>> with open(manifest, "w") as handle:
...     _ = handle.write("ID,duration,wav,wrd\\n")
...     _ = handle.writelines(f"u{i},1.0,x.wav,THE CAT SAT ON THE MAT NUMBER {i % 7}\\n" for i in range(40))
>>> model = train_sentencepiece(manifest, "wrd", 24, "unigram", os.path.join(folder, "sp"))
>>> tokenizer = sentencepiece_label_encoder(model)
>>> tokenizer.labels()[:4], len(tokenizer)
(['<blank>', '<bos>', '<eos>', '<unk>'], 24)
>>> pieces = SentencePieceSplitter(model)("THE CAT SAT")
>>> tokenizer.decode_ids(tokenizer.encode_sequence(pieces))
'THE CAT SAT'
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Mapping, Optional

from hieradist_lobes.errors import ReportedError
from hieradist_lobes.files import file_sha256, write_json
from hieradist_lobes.tokens import BLANK, BOS, EOS, UNK, LabelTokenizer

logger = logging.getLogger(__name__)

MODEL_TYPES = ("unigram", "bpe", "char")
FOLDER_MODEL = "sentencepiece.model"  # the SentencePiece model's name in an exported model folder
SPECIAL_IDS = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3}  # blank (pad), <bos>, <eos>, <unk>
SPECIAL_LABELS = (BLANK, BOS, EOS, UNK)


class SentencePieceError(ReportedError, ValueError):
    """A SentencePiece model cannot be trained, or the one there is not this training set's."""


def model_path(folder: str, vocab_size: int, model_type: str) -> str:
    """Where the model of ``vocab_size`` pieces of ``model_type`` lives in ``folder`` (SpeechBrain's naming).

    Example
    -------
    >>> model_path("data/manifests/sentencepiece", 1000, "unigram")
    'data/manifests/sentencepiece/1000_unigram.model'
    """
    return os.path.join(folder, f"{vocab_size}_{model_type}.model")


def transcripts_sha256(train_manifest: str, column: str) -> str:
    """SHA-256 of a manifest's ``column``, row by row: what SentencePiece trains on (the audio paths may move).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False).name
    >>> _ = open(path, "w").write("ID,wav,wrd\\nu1,/a/x.wav,HELLO THERE\\n")
    >>> first = transcripts_sha256(path, "wrd")
    >>> _ = open(path, "w").write("ID,wav,wrd\\nu1,/b/x.wav,HELLO THERE\\n")
    >>> transcripts_sha256(path, "wrd") == first
    True
    """
    import csv
    import hashlib

    digest = hashlib.sha256()
    with open(train_manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            digest.update((row.get(column) or "").encode("utf-8") + b"\n")
    return digest.hexdigest()


def _provenance(train_manifest: str, column: str, vocab_size: int, model_type: str,
                character_coverage: float) -> Dict[str, object]:
    return {"transcripts_sha256": transcripts_sha256(train_manifest, column), "column": column,
            "vocab_size": vocab_size, "model_type": model_type, "character_coverage": character_coverage,
            **SPECIAL_IDS}



def _record_path(model: str) -> str:
    return os.path.splitext(model)[0] + ".json"


@contextlib.contextmanager
def _waiting_lock(path: str) -> Iterator[None]:
    """An exclusive lock on ``path`` that waits for its holder (runs started side by side train once)."""
    import fcntl

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_record(model: str, wanted: Dict[str, object]) -> None:
    import json

    record = _record_path(model)
    if not os.path.isfile(record):
        raise SentencePieceError(f"{model} has no record of what it was trained on ({record} is missing): it may be "
                                 "another training set's; remove it to train it again, or set sentencepiece_folder "
                                 "to another folder")
    with open(record, encoding="utf-8") as handle:
        found = json.load(handle)
    differences = [f"{key} {found.get(key)!r} there, {value!r} here" for key, value in wanted.items()
                   if found.get(key) != value and key != "transcripts_sha256"]
    if found.get("transcripts_sha256") != wanted["transcripts_sha256"]:
        differences.insert(0, f"its transcripts were those of {found.get('train_manifest', 'another manifest')}, "
                              f"whose {wanted['column']!r} column differs from this training set's")
    if differences:
        raise SentencePieceError(f"{model} was trained on other transcripts or settings ({'; '.join(differences)}): "
                                 "a model's units must be its training set's; remove that folder to train it again, "
                                 "or set sentencepiece_folder to another folder")


def _train(train_manifest: str, column: str, vocab_size: int, model_type: str, character_coverage: float,
           folder: str, model: str, wanted: Dict[str, object]) -> None:
    from speechbrain.tokenizers.SentencePiece import SentencePiece

    staging = tempfile.mkdtemp(prefix=".training-", dir=folder)
    try:
        try:
            SentencePiece(model_dir=staging, vocab_size=vocab_size, annotation_train=train_manifest,
                          annotation_read=column, model_type=model_type, character_coverage=character_coverage,
                          **SPECIAL_IDS)
        except RuntimeError as error:  # SentencePiece's own report, e.g. a vocabulary larger than the text allows
            raise SentencePieceError(f"SentencePiece could not be trained on the {column!r} column of "
                                     f"{train_manifest} with sentencepiece_vocab_size {vocab_size} "
                                     f"({model_type}): {str(error).strip()}") from None
        trained = model_path(staging, vocab_size, model_type)
        for extension in (".vocab", ".model"):  # the model last: its presence means the pair is complete
            os.replace(os.path.splitext(trained)[0] + extension, os.path.splitext(model)[0] + extension)
        write_json(_record_path(model), wanted, indent=2)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train_sentencepiece(train_manifest: str, column: str, vocab_size: int, model_type: str, folder: str,
                        character_coverage: float = 1.0) -> str:
    """The SentencePiece model of a training manifest's ``column``: trained into ``folder`` if absent, else the
    one there, if it was trained on the same transcripts and settings.  Returns the model's path.

    With several processes of one ``torchrun``, the main one trains and the others wait for it.

    Raises
    ------
    SentencePieceError
        If the model there was trained on other transcripts or settings, or if SentencePiece cannot train
        (its own message, e.g. the largest vocabulary the transcripts allow).
    """
    from speechbrain.utils.distributed import run_on_main

    if model_type not in MODEL_TYPES:
        raise SentencePieceError(f"sentencepiece_model_type {model_type!r}: choose one of {', '.join(MODEL_TYPES)}")
    if vocab_size <= len(SPECIAL_LABELS):
        raise SentencePieceError(f"sentencepiece_vocab_size {vocab_size}: give more than the {len(SPECIAL_LABELS)} "
                                 "special labels (blank, <bos>, <eos>, <unk>)")
    model = model_path(folder, vocab_size, model_type)

    def train_once() -> None:
        wanted = _provenance(train_manifest, column, vocab_size, model_type, character_coverage)
        with _waiting_lock(os.path.join(folder, ".training.lock")):
            if os.path.isfile(model):
                _check_record(model, wanted)
                return
            logger.info("Training SentencePiece (%s, %d pieces) on %s", model_type, vocab_size, train_manifest)
            _train(train_manifest, column, vocab_size, model_type, character_coverage, folder, model,
                   {**wanted, "train_manifest": os.path.abspath(train_manifest)})

    run_on_main(train_once)
    return model


def _processor(model: str):
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor()
    processor.load(model)
    return processor


class SentencePieceSplitter:
    """A transcript to its SentencePiece pieces (what :func:`hieradist_lobes.data.pipelines.label_items`
    calls ``split_labels``); the model is loaded at first use, so that DataLoader workers receive a path.

    Example
    -------
    >>> SentencePieceSplitter("absent.model").model_path
    'absent.model'
    """

    unknown_piece: Optional[str] = None  # a character outside the model becomes <unk>, as SpeechBrain's does

    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._processor = None

    def __call__(self, text: str) -> List[str]:
        if self._processor is None:
            self._processor = _processor(self.model_path)
        return self._processor.encode_as_pieces(text)

    def __getstate__(self) -> Dict[str, object]:
        return {"model_path": self.model_path, "_processor": None}


def folder_splitter(folder: str) -> Optional[SentencePieceSplitter]:
    """How a model folder's transcripts become labels: its SentencePiece model, if it has one
    (``None``: the manifest column split at spaces).

    Example
    -------
    >>> import tempfile
    >>> folder_splitter(tempfile.mkdtemp()) is None
    True
    """
    model = os.path.join(folder, FOLDER_MODEL)
    return SentencePieceSplitter(model) if os.path.isfile(model) else None


def splitter_identity(split_labels) -> Optional[str]:
    """What decides how ``split_labels`` cuts a transcript: a SentencePiece model's bytes (SHA-256), else ``None``.

    Example
    -------
    >>> splitter_identity(None) is None
    True
    """
    path = getattr(split_labels, "model_path", None)
    return file_sha256(path) if path else None


def sentencepiece_label_encoder(model: str) -> LabelTokenizer:
    """The label vocabulary of a SentencePiece model: its pieces in id order, the special ids named as the
    project names them (blank, ``<bos>``, ``<eos>``, ``<unk>``); unseen pieces map to ``<unk>``."""
    processor = _processor(model)
    for label, (key, index) in zip(SPECIAL_LABELS, SPECIAL_IDS.items()):
        if getattr(processor, key)() != index:
            raise SentencePieceError(f"{model} has {key} {getattr(processor, key)()}, not {index}: it was not trained "
                                     f"by this project (the {label} label must be id {index}); train it again")
    tokenizer = LabelTokenizer("sentencepiece")
    pieces = [processor.id_to_piece(index) for index in range(processor.get_piece_size())]
    tokenizer.update_from_iterable(list(SPECIAL_LABELS) + pieces[len(SPECIAL_LABELS):], sequence_input=False)
    tokenizer.blank_label, tokenizer.bos_label, tokenizer.eos_label, tokenizer.unk_label = SPECIAL_LABELS
    tokenizer.sentencepiece_model = model  # the export copies it into the model folder
    return tokenizer


def sentencepiece_units(hparams: Mapping[str, object], train_manifest: str) -> str:
    """The SentencePiece model a YAML with ``label_set: sentencepiece`` names (trained if needed)."""
    return train_sentencepiece(train_manifest, hparams["unit"], int(hparams["sentencepiece_vocab_size"]),
                               hparams["sentencepiece_model_type"], hparams["sentencepiece_folder"],
                               float(hparams.get("sentencepiece_character_coverage", 1.0)))
