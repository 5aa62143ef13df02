import pytest

from hieradist_lobes.data.phones import PHONES_39
from hieradist_lobes.tokens import build_label_encoder, load_label_encoder


def test_phone_vocabulary_is_fixed():
    first = build_label_encoder("phn", "phones39")
    assert first.labels() == ["<blank>", "<bos>", "<eos>"] + sorted(PHONES_39)
    assert first.labels() == build_label_encoder("phn", "phones39").labels()


def test_vocabulary_from_data_and_char_decoding():
    tokenizer = build_label_encoder("char", sequences=[list("HI_YOU"), list("OH")])
    assert tokenizer.labels()[3:] == ["H", "I", "O", "U", "Y", "_"]
    ids = tokenizer.encode_sequence(list("HI_YOU"))
    assert tokenizer.decode_ids([tokenizer.get_bos_index()] + ids + [tokenizer.get_eos_index()]) == "HI YOU"


def test_save_and_load(tmp_path):
    tokenizer = build_label_encoder("phn", "phones39")
    tokenizer.save(str(tmp_path / "t.ckpt"))
    loaded = load_label_encoder(str(tmp_path / "t.ckpt"))
    assert loaded.labels() == tokenizer.labels() and loaded.get_eos_index() == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="unit"):
        build_label_encoder("syllable", "phones39")
    with pytest.raises(ValueError, match="needs the training label sequences"):
        build_label_encoder("char", "from_data")
    with pytest.raises(ValueError, match="unknown label_set"):
        build_label_encoder("phn", "phones61")


def test_wordpiece_vocabulary_with_unknown_survives_save_and_load(tmp_path):
    from hieradist_lobes.tokens import load_label_encoder

    tokenizer = build_label_encoder("wordpiece", "from_data", [["the", "clean", "##s"], ["the", "dog"]], unknown=True)
    assert tokenizer.labels() == ["<blank>", "<bos>", "<eos>", "<unk>", "##s", "clean", "dog", "the"]
    # A piece never seen in training maps to <unk> (a test transcript must not crash the pipeline).
    assert tokenizer.encode_sequence(["the", "cat"]) == [7, 3]
    assert tokenizer.decode_ids([7, 5, 4, 6, 2]) == "the cleans dog"
    tokenizer.save(str(tmp_path / "tokenizer.ckpt"))
    loaded = load_label_encoder(str(tmp_path / "tokenizer.ckpt"), "wordpiece")
    assert loaded.labels() == tokenizer.labels() and loaded.encode_sequence(["cat"]) == [3]
    with pytest.raises(ValueError, match="unit must be one of"):
        build_label_encoder("bpe", "from_data", [["a"]])


def test_a_checked_vocabulary_encodes_without_speechbrains_unchecked_length_warning(caplog):
    """Every training run logged `expect_len was never called`, although check_vocabulary had checked it."""
    import logging

    from hieradist_lobes.tokens import build_label_encoder, check_vocabulary

    tokenizer = build_label_encoder("phn", "phones39")
    check_vocabulary(tokenizer, 42, "asr.yaml")
    with caplog.at_level(logging.WARNING, logger="speechbrain.dataio.encoder"):
        tokenizer.encode_sequence(["aa", "b"])
    assert "expect_len" not in caplog.text
