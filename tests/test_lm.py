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


def test_an_lm_text_file_becomes_token_sequences_with_unknown_pieces_as_unk(tmp_path):
    from hieradist_lobes.lm import text_file_dataset

    tokenizer = build_label_encoder("wrd", "from_data", [["THE", "CAT", "SAT"]], unknown=True)
    path = tmp_path / "lm.txt"
    path.write_text("THE CAT SAT\n\n  \nTHE DOG SAT\n", encoding="utf-8")
    dataset = text_file_dataset(str(path), tokenizer, "wrd")
    items = [dataset[i] for i in range(len(dataset))]
    assert len(items) == 2  # blank lines skipped
    unk = tokenizer.lab2ind["<unk>"]
    assert items[1]["tokens_eos"].tolist() == [tokenizer.lab2ind["THE"], unk, tokenizer.lab2ind["SAT"],
                                               tokenizer.get_eos_index()]
    assert items[0]["tokens_bos"][0] == tokenizer.get_bos_index()


def test_a_missing_or_empty_lm_text_file_is_named(tmp_path):
    from hieradist_lobes.lm import text_file_dataset

    tokenizer = build_label_encoder("wrd", "from_data", [["A"]])
    with pytest.raises(ValueError, match="does not exist.*lm_train_text"):
        text_file_dataset(str(tmp_path / "none.txt"), tokenizer, "wrd")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="empty.txt holds no transcript"):
        text_file_dataset(str(tmp_path / "empty.txt"), tokenizer, "wrd")
