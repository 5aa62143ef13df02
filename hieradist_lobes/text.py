"""Label sequences to text: the one rule per unit, shared by every decoder (no torch import here,
so that the onnxruntime decoder, :mod:`hieradist_lobes.onnx_runtime`, uses it too).

Example
-------
>>> join_labels(["play", "##ing", "<eos>", "now"], "wordpiece")
'playing now'
>>> join_labels(["\u2581pl", "ay", "\u2581now"], "sentencepiece")
'play now'
"""

from __future__ import annotations

from typing import Iterable

BLANK, BOS, EOS, UNK = "<blank>", "<bos>", "<eos>", "<unk>"
WORD_BOUNDARY = "_"
WORDPIECE_CONTINUATION = "##"
WORD_START = "\u2581"  # SentencePiece's mark of a piece that begins a word
SPECIALS = frozenset({BLANK, BOS, EOS})

__all__ = ["join_labels"]


def join_labels(labels: Iterable[str], unit: str) -> str:
    """The text of a label sequence of ``unit`` (see :class:`hieradist_lobes.tokens.LabelTokenizer`);
    blank, bos and eos are dropped."""
    labels = [label for label in labels if label not in SPECIALS]
    if unit == "char":
        return "".join(" " if label == WORD_BOUNDARY else label for label in labels).strip()
    if unit == "wordpiece":
        return " ".join(labels).replace(" " + WORDPIECE_CONTINUATION, "")
    if unit == "sentencepiece":
        return " ".join("".join(labels).replace(WORD_START, " ").split())
    return " ".join(labels)
