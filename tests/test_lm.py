"""The token LM for shallow fusion: model, folder export and loading."""

import os

import pytest
import torch

from hieradist_lobes.lm import TokenLM, export_lm_folder, load_lm
from hieradist_lobes.tokens import build_label_encoder

LM_YAML = "!new:hieradist_lobes.lm.TokenLM\nvocab_size: 7\nembedding_size: 8\nhidden_size: 16\n"


def _folder(tmp_path, labels=("a", "b", "c", "d")):
    tokenizer = build_label_encoder("wrd", "from_data", [list(labels)])
    lm = TokenLM(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16)
    torch.save(lm.state_dict(), tmp_path / "lm.ckpt")
    folder = str(tmp_path / "lm")
    export_lm_folder(LM_YAML, str(tmp_path / "lm.ckpt"), tokenizer, folder, {"name": "lm"})
    return folder, lm, tokenizer


def test_next_token_distributions_sum_to_one():
    logprobs = TokenLM(vocab_size=5, embedding_size=4, hidden_size=8)(torch.tensor([[1, 2, 3]]))
    assert logprobs.shape == (1, 3, 5) and torch.allclose(logprobs.exp().sum(-1), torch.ones(1, 3))


def test_an_exported_folder_loads_the_same_lm(tmp_path):
    folder, lm, tokenizer = _folder(tmp_path)
    assert sorted(os.listdir(folder)) == ["hyperparams.yaml", "info.json", "lm.ckpt", "tokenizer.ckpt"]
    loaded = load_lm(folder, expected_labels=tokenizer.labels())
    tokens = torch.tensor([[1, 3, 4]])
    assert torch.allclose(loaded(tokens), lm.eval()(tokens))


def test_another_vocabulary_or_a_missing_file_is_refused(tmp_path):
    folder, _, tokenizer = _folder(tmp_path)
    with pytest.raises(ValueError, match="another vocabulary than the ASR model"):
        load_lm(folder, expected_labels=list(reversed(tokenizer.labels())))
    os.remove(os.path.join(folder, "lm.ckpt"))
    with pytest.raises(FileNotFoundError, match="not an LM folder: no lm.ckpt"):
        load_lm(folder)
