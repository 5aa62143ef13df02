"""PLM token features, the teacher of CIF-HieraDist, into the plm teacher store (a tiny random BERT: nothing is downloaded)."""

import logging
import os

import numpy as np
import pytest
import torch

from hieradist_lobes import plm
from hieradist_lobes.plm import (
    PLMAlignmentError,
    PLMTextTooLongError,
    PLMTokenizer,
    manifest_texts,
    plm_label_sequences,
)
from hieradist_lobes.plm_features import PLMFeatureExtractor, save_plm_features
from hieradist_lobes.teacher_store import PLMRecord, TeacherStore, TeacherStoreError, format_summary
from hieradist_lobes.tokens import build_label_encoder
from tests.plm_fixtures import HIDDEN, SENTENCES, tiny_plm_folder
from tests.plm_fixtures import sentence_encoder as _encoder
from tests.plm_fixtures import sentences_manifest as _manifest


def _direct_hidden_states(folder, text, layer):
    from transformers import BertModel, BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    encoded = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        states = model(**encoded, output_hidden_states=True).hidden_states[layer][0]
    return tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]), states.numpy()

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
    other = PLMTokenizer(tiny_plm_folder(tmp_path / "other", ["the", "garden", "could", "travel", "cat", "sat", "##s",
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
