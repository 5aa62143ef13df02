"""A token language model for shallow fusion with CIF decoding.

Trained by ``recipes/train_lm.py`` on a text file (``lm_train_text``) or the
training transcripts, in the ASR model's own label vocabulary (the same PLM tokens, the same indices), and
exported as a folder that :class:`~hieradist_lobes.inference.CIFASR` loads
(``lm_folder``, ``lm_weight``)::

    lm/
      hyperparams.yaml   the LM definition (``lm_model``), resolved
      lm.ckpt            its parameters (best validation perplexity)
      tokenizer.ckpt     the label vocabulary, checked against the ASR model's
      info.json          name, validation perplexity

Example
-------
>>> lm = TokenLM(vocab_size=6, embedding_size=8, hidden_size=16)
>>> logprobs = lm(torch.tensor([[1, 4, 5]]))
>>> logprobs.shape, bool(torch.allclose(logprobs.exp().sum(-1), torch.ones(1, 3)))
(torch.Size([1, 3, 6]), True)
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Callable, Optional, Sequence, Tuple

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset

from hieradist_lobes.data.manifest import manifest_data
from hieradist_lobes.data.pipelines import label_items
from hieradist_lobes.export import check_finite_checkpoint
from hieradist_lobes.files import staged_folder
from hieradist_lobes.tokens import LabelTokenizer, first_difference, load_label_encoder


class TokenLM(torch.nn.Module):
    """An LSTM language model over label indices.

    Arguments
    ---------
    vocab_size : int
    embedding_size : int
    hidden_size : int
    num_layers : int
    dropout : float
    """

    def __init__(self, vocab_size: int, embedding_size: int = 128, hidden_size: int = 256, num_layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, embedding_size)
        self.rnn = torch.nn.LSTM(embedding_size, hidden_size, num_layers, batch_first=True,
                                 dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = torch.nn.Dropout(dropout)
        self.output = torch.nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the next token, ``B × L × vocab``, for prefixes ``B × L``."""
        return self.forward_with_state(tokens, None)[0]

    def forward_with_state(self, tokens: torch.Tensor,
                      state: Optional[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, Tuple]:
        """:meth:`forward` continuing from the LSTM ``state`` (``None``: the start); returns the new state too."""
        hidden, state = self.rnn(self.dropout(self.embedding(tokens)), state)
        return torch.log_softmax(self.output(self.dropout(hidden)), dim=-1), state

    def step(self, prev_tokens: torch.Tensor,
             state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Tuple[torch.Tensor, Tuple]:
        """Log-probabilities of the next token (``B × vocab``) after ``prev_tokens`` (``B``), carrying the
        LSTM state from the previous call (``None`` at ``<bos>``): what a beam search calls once per step.

        Example
        -------
        >>> lm = TokenLM(vocab_size=6, embedding_size=4, hidden_size=8).eval()
        >>> tokens = torch.tensor([[1, 3, 4]])
        >>> logprobs, state = lm.step(tokens[:, 0])
        >>> for i in (1, 2):
        ...     logprobs, state = lm.step(tokens[:, i], state)
        >>> torch.allclose(logprobs, lm(tokens)[:, -1], atol=1e-6)
        True
        """
        logprobs, state = self.forward_with_state(prev_tokens[:, None], state)
        return logprobs[:, 0], state

    @staticmethod
    def reorder_state(state: Tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor) -> Tuple:
        """The state of the hypotheses ``rows`` (the LSTM's batch is its second dimension)."""
        return tuple(part[:, rows] for part in state)


def text_dataset(manifest: str, tokenizer: LabelTokenizer, unit: str,
                 split_labels: Optional[Callable[[str], Sequence[str]]] = None) -> DynamicItemDataset:
    """The transcripts of a manifest as ``tokens_bos`` / ``tokens_eos`` (no audio is read)."""
    return _token_dataset(DynamicItemDataset(manifest_data(manifest)), tokenizer, unit, split_labels)


def text_file_dataset(path: str, tokenizer: LabelTokenizer, unit: str,
                      split_labels: Optional[Callable[[str], Sequence[str]]] = None) -> DynamicItemDataset:
    """An LM text file as ``tokens_bos`` / ``tokens_eos``: one transcript per
    line, written as the manifests' ``unit`` column (words for ``wrd``);
    blank lines are skipped. Pieces outside the ASR vocabulary become
    ``<unk>``.

    Raises
    ------
    ValueError
        If the file does not exist or holds no transcript.
    """
    if not os.path.isfile(path):
        raise ValueError(f"LM text file {path} does not exist (lm_train_text); give a text file with one transcript "
                         "per line, or lm_train_text: null to train on the training transcripts")
    with open(path, encoding="utf-8") as handle:
        lines = {f"line{number}": {unit: line.strip()} for number, line in enumerate(handle, start=1) if line.strip()}
    if not lines:
        raise ValueError(f"LM text file {path} holds no transcript (every line is empty)")
    return _token_dataset(DynamicItemDataset(lines), tokenizer, unit, split_labels)


def _token_dataset(dataset: DynamicItemDataset, tokenizer: LabelTokenizer, unit: str,
                   split_labels: Optional[Callable[[str], Sequence[str]]]) -> DynamicItemDataset:
    encode = label_items(tokenizer, unit, split_labels)

    @sb.utils.data_pipeline.takes(unit)
    @sb.utils.data_pipeline.provides("tokens_bos", "tokens_eos")
    def label_pipeline(text):
        out = encode(text)
        yield out["tokens_bos"]
        yield out["tokens_eos"]

    dataset.add_dynamic_item(label_pipeline)
    dataset.set_output_keys(["id", "tokens_bos", "tokens_eos"])
    return dataset


def load_lm(folder: str, expected_labels: Optional[Sequence[str]] = None, device: str = "cpu") -> TokenLM:
    """Load an LM folder written by ``recipes/train_lm.py``, in eval mode.

    Raises
    ------
    ValueError
        If its vocabulary differs from ``expected_labels`` (the ASR model's).
    """
    paths = {name: os.path.join(folder, name) for name in ("hyperparams.yaml", "lm.ckpt", "tokenizer.ckpt")}
    missing = [name for name, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"{folder} is not an LM folder: no {', '.join(missing)}")
    with open(paths["hyperparams.yaml"], encoding="utf-8") as handle:
        lm = load_hyperpyyaml(handle)["lm_model"]
    # Names the file when it is damaged, and refuses a diverged LM's NaN weights.
    lm.load_state_dict(check_finite_checkpoint(paths["lm.ckpt"]))
    if expected_labels is not None:
        labels = load_label_encoder(paths["tokenizer.ckpt"], "wordpiece").labels()
        if list(labels) != list(expected_labels):
            first = first_difference(labels, list(expected_labels))
            raise ValueError(f"the LM in {folder} has another vocabulary than the ASR model "
                             f"({len(labels)} vs {len(expected_labels)} labels, first difference at index {first})")
    return lm.to(device).eval()


def export_lm_folder(lm_yaml: str, checkpoint: str, tokenizer: LabelTokenizer, folder: str,
                     info: dict) -> str:
    """Write an LM folder: ``lm_yaml`` (resolved text defining ``lm_model``), the checkpoint, the vocabulary."""
    with staged_folder(folder) as staging:
        with open(os.path.join(staging, "hyperparams.yaml"), "w", encoding="utf-8") as handle:
            handle.write("lm_model:\n" + "".join(f"    {line}\n" for line in lm_yaml.splitlines()))
        shutil.copyfile(checkpoint, os.path.join(staging, "lm.ckpt"))
        tokenizer.save(os.path.join(staging, "tokenizer.ckpt"))
        with open(os.path.join(staging, "info.json"), "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
    return folder
