"""Label vocabularies: one way to build them, one file format, ``decode_ids``.

Teachers, the teacher store and students must agree on the label vocabulary.
:func:`build_label_encoder` is the only place that builds one: blank at index
0, ``<bos>`` at 1, ``<eos>`` at 2, then the labels in sorted order.  For phone
labels the set is fixed (:data:`~hieradist_lobes.data.phones.PHONES_39`), so the
vocabulary does not depend on the data at all; for characters it is collected
from the training manifest.

:class:`LabelTokenizer` is SpeechBrain's ``CTCTextEncoder`` plus the
``decode_ids`` method that ``EncoderDecoderASR`` calls to turn label indices
into a string.

Example
-------
>>> tokenizer = build_label_encoder("phn", label_set="phones39")
>>> len(tokenizer), tokenizer.get_blank_index(), tokenizer.get_bos_index(), tokenizer.get_eos_index()
(42, 0, 1, 2)
>>> tokenizer.decode_ids(tokenizer.encode_sequence(["k", "ae", "t"]))
'k ae t'
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.utils.checkpoints import register_checkpoint_hooks

from hieradist_lobes.data.phones import PHONES_39

from hieradist_lobes.text import BLANK, BOS, EOS, UNK, join_labels
UNITS = ("phn", "char", "wrd", "wordpiece", "sentencepiece")


@register_checkpoint_hooks
class LabelTokenizer(CTCTextEncoder):
    """A ``CTCTextEncoder`` that ``EncoderDecoderASR`` can use as its tokenizer.

    Arguments
    ---------
    unit : str
        ``phn`` (labels joined with spaces), ``char`` (joined without spaces,
        ``_`` becoming a space), ``wrd`` (joined with spaces) or
        ``wordpiece`` (a pre-trained LM's tokens: joined with spaces, ``##``
        continuations glued to the previous piece) or ``sentencepiece``
        (SentencePiece pieces: joined, ``\u2581`` starting a word).
    expected_len : int, optional
        The number of labels the model has (its ``output_neurons``): the
        labels loaded later must be that many (SpeechBrain's ``expect_len``,
        checked at first use; without it SpeechBrain warned on every load).

    Example
    -------
    >>> tokenizer = LabelTokenizer("phn", expected_len=3)
    >>> tokenizer.update_from_iterable(["<blank>", "a", "b"], sequence_input=False)
    >>> tokenizer.decode_ids([1, 2])
    'a b'
    """

    def __init__(self, unit: str = "phn", expected_len: Optional[int] = None) -> None:
        super().__init__()
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        self.unit = unit
        if expected_len is not None:
            self.expect_len(expected_len)

    def load(self, path: str) -> None:
        """SpeechBrain's ``load``; with ``expected_len``, the labels loaded are checked against it here
        (SpeechBrain checks at first use, which :meth:`decode_ids` does not go through)."""
        super().load(path)
        expected = getattr(self, "expected_len", None)
        if expected is not None and len(self) != expected:
            from hieradist_lobes.export import ModelFolderError

            raise ModelFolderError(f"{path} holds {len(self)} labels, but the model has {expected} outputs: the "
                                   "label file is not this model's; export the model folder again")

    def decode_ids(self, ids: Iterable[int]) -> str:
        """Label indices to text; special labels are dropped.

        Example
        -------
        >>> pieces = build_label_encoder("wordpiece", sequences=[["play", "##ing", "now"]])
        >>> pieces.decode_ids(pieces.encode_sequence(["now", "play", "##ing"]))
        'now playing'
        """
        return join_labels([self.ind2lab[int(i)] for i in ids], self.unit)

    def labels(self) -> List[str]:
        """All labels in index order."""
        return [self.ind2lab[i] for i in range(len(self))]


def build_label_encoder(
    unit: str, label_set: str = "from_data", sequences: Optional[Iterable[Sequence[str]]] = None,
    unknown: bool = False,
) -> LabelTokenizer:
    """The project's label vocabulary for ``unit``.

    Arguments
    ---------
    unit : str
        Manifest column the labels come from: ``phn``, ``char`` or ``wrd``.
    label_set : str
        ``phones39`` (the fixed phone set, independent of the data) or
        ``from_data`` (every label of ``sequences``).
    sequences : iterable of sequences of str, optional
        Label sequences of the training data, for ``from_data``.
    unknown : bool
        Add ``<unk>`` (index 3), which labels outside the vocabulary map to
        (e.g. a test word's piece never seen in training).

    Example
    -------
    >>> build_label_encoder("char", sequences=[["B", "A"], ["A", "_", "C"]]).labels()
    ['<blank>', '<bos>', '<eos>', 'A', 'B', 'C', '_']
    """
    tokenizer = LabelTokenizer(unit)
    if label_set == "phones39":
        labels = sorted(PHONES_39)
    elif label_set == "from_data":
        if sequences is None:
            raise ValueError("label_set 'from_data' needs the training label sequences")
        labels = sorted({label for sequence in sequences for label in sequence})
    else:
        raise ValueError(f"unknown label_set {label_set!r}; use phones39 or from_data")
    specials = [BLANK, BOS, EOS] + ([UNK] if unknown else [])
    tokenizer.update_from_iterable(specials + [label for label in labels if label not in specials],
                                   sequence_input=False)
    tokenizer.blank_label, tokenizer.bos_label, tokenizer.eos_label = BLANK, BOS, EOS
    if unknown:
        tokenizer.unk_label = UNK
    return tokenizer


def first_difference(first: Sequence[str], second: Sequence[str]) -> int:
    """Index of the first position where two label sequences differ (the
    shorter length if one is a prefix of the other), for error messages.

    Example
    -------
    >>> first_difference(["a", "b", "c"], ["a", "x"]), first_difference(["a"], ["a", "b"])
    (1, 1)
    """
    return next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))


def load_label_encoder(path: str, unit: str = "phn") -> LabelTokenizer:
    """Load a label vocabulary saved with ``tokenizer.save(path)``."""
    tokenizer = LabelTokenizer(unit)
    tokenizer.load(path)
    return tokenizer


def make_tokenizer(hparams: Mapping[str, object], manifests: Mapping[str, str],
                   split_labels: Optional[Callable[[str], Sequence[str]]] = None) -> LabelTokenizer:
    """The label vocabulary of a CTC/attention recipe YAML: ``unit`` (the
    manifest column) and ``label_set`` (``phones39``: the fixed phone set;
    ``from_data``: the labels of the training manifest; ``plm_tokens``: the
    PLM tokens of the training transcripts, the CIF models' units, with
    ``split_labels`` from :func:`hieradist_lobes.plm.label_splitter`).  The
    CIF recipes' labels are always the PLM's tokens
    (:func:`hieradist_lobes.plm.plm_tokenizer`)."""
    from hieradist_lobes.data.manifest import CORE_FIELDS, read_manifest

    unit, label_set = hparams["unit"], hparams["label_set"]
    if label_set == "plm_tokens":
        from hieradist_lobes.plm import plm_tokenizer

        if split_labels is None:
            raise ValueError("label_set 'plm_tokens' needs the PLM's splitter (hieradist_lobes.plm.label_splitter)")
        return plm_tokenizer(manifests["train"], split_labels)
    sequences = None
    if label_set == "from_data":
        # Tolerant reading: the rows' problems are reported together by the manifest check.
        rows = read_manifest(manifests["train"], CORE_FIELDS + [unit], unique_ids=False)
        sequences = [(row[unit] or "").split() for row in rows]
    return build_label_encoder(unit, label_set, sequences)


def label_units(hparams: Mapping[str, object], manifests: Mapping[str, str]
                ) -> Tuple[LabelTokenizer, Optional[Callable[[str], Sequence[str]]]]:
    """A CTC/attention recipe's label vocabulary and how a transcript becomes labels (``None``: the
    manifest column split at spaces), for every ``label_set``: ``sentencepiece`` trains the
    SentencePiece model on the training manifest once (:mod:`hieradist_lobes.subwords`);
    ``plm_tokens`` cuts with the PLM's tokenizer; the others split at spaces (:func:`make_tokenizer`).

    Example
    -------
    >>> tokenizer, split_labels = label_units({"unit": "phn", "label_set": "phones39"}, {})
    >>> len(tokenizer), split_labels is None
    (42, True)
    """
    if hparams["label_set"] == "sentencepiece":
        from hieradist_lobes.subwords import SentencePieceSplitter, sentencepiece_label_encoder, sentencepiece_units

        model = sentencepiece_units(hparams, manifests["train"])
        return sentencepiece_label_encoder(model), SentencePieceSplitter(model)
    from hieradist_lobes.plm import label_splitter

    split_labels = label_splitter(hparams)
    return make_tokenizer(hparams, manifests, split_labels), split_labels


def vocabulary_size(hparams: Mapping[str, object]) -> int:
    """The size of a CTC/attention YAML's label vocabulary, counted from its data (``output_neurons: auto``;
    :func:`hieradist_lobes.hparams.load_hparams`)."""
    from hieradist_lobes.data import prepare_manifests

    return len(label_units(hparams, prepare_manifests(hparams))[0])


def check_vocabulary(tokenizer: LabelTokenizer, output_neurons: int, where: str) -> None:
    """The model's output size must equal the vocabulary size.

    Example
    -------
    >>> check_vocabulary(build_label_encoder("phn", "phones39"), 42, "asr.yaml")
    """
    from hieradist_lobes.hparams import HparamsError

    if len(tokenizer) != output_neurons:
        raise HparamsError(
            f"{where}: output_neurons is {output_neurons} but the label vocabulary has {len(tokenizer)} labels "
            f"({', '.join(tokenizer.labels()[:8])}, ...); set output_neurons: {len(tokenizer)}"
        )
    # Checked: SpeechBrain's encoder would otherwise warn on every run that nobody checked it.
    tokenizer.expect_len(output_neurons)
