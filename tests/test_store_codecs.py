"""The store's codecs: what each kind of record holds and how it is written and read."""

import h5py
import numpy as np
import pytest

from hieradist_lobes.store_codecs import (
    CODECS,
    LOG_FLOOR,
    PLMFeatureCodec,
    PLMRecord,
    PosteriorCodec,
    TeacherRecord,
    TeacherStoreError,
    expand_top_k,
)
from hieradist_lobes.teacher_store import StoreMetadata

LABELS = ["<blank>", "<bos>", "<eos>", "a", "b", "c"]


def _group(tmp_path):
    handle = h5py.File(tmp_path / "codec.h5", "w")
    return handle, handle.create_group("utt")


def _posteriors(rows, rng):
    logits = rng.normal(size=(rows, len(LABELS))).astype(np.float32)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def test_every_kind_has_one_codec():
    assert set(CODECS) == {"asr", "plm"}
    assert isinstance(StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=1.0).codec, PosteriorCodec)
    plm = StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=0.0, kind="plm", feature_dim=4)
    assert isinstance(plm.codec, PLMFeatureCodec)


@pytest.mark.parametrize("top_k", [0, 2])
def test_posteriors_round_trip_through_a_group(tmp_path, top_k):
    rng = np.random.default_rng(0)
    metadata = StoreMetadata(labels=LABELS, teachers=[{}, {}], frame_rate=25.0, dtype="float32", top_k=top_k)
    record = TeacherRecord(ctc_logprobs=[_posteriors(5, rng), _posteriors(3, rng)],
                           att_logprobs=[_posteriors(3, rng), _posteriors(3, rng)],
                           ctc_error_rate=[10.0, 20.0], att_error_rate=[5.0, 0.0], tokens=[3, 4], duration=0.5)
    codec = metadata.codec
    handle, group = _group(tmp_path)
    codec.write(group, codec.prepare(record, metadata, "u"), metadata, {})
    group.attrs["tokens"], group.attrs["duration"] = np.asarray(record.tokens), record.duration
    back = codec.read(group, metadata)
    handle.close()
    assert [m.shape for m in back.ctc_logprobs] == [(5, 6), (3, 6)] and len(back.att_logprobs) == 2
    assert back.ctc_error_rate == [10.0, 20.0] and back.tokens == [3, 4]
    if top_k:
        best = np.argsort(-record.ctc_logprobs[0], axis=1)[:, :2]
        assert np.allclose(np.take_along_axis(back.ctc_logprobs[0], best, 1),
                           np.take_along_axis(record.ctc_logprobs[0], best, 1), atol=1e-6)
        assert np.allclose(np.exp(back.ctc_logprobs[0]).sum(1), 1.0, atol=1e-5)
    else:
        assert np.allclose(back.ctc_logprobs[1], record.ctc_logprobs[1], atol=1e-6)


def test_log_posteriors_are_floored_not_infinite(tmp_path):
    metadata = StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=25.0, dtype="float16")
    ctc = np.array([[0.0] + [-np.inf] * 5], dtype=np.float32)  # log(1), then log(0) for five classes
    record = TeacherRecord(ctc_logprobs=[ctc], att_logprobs=[np.full((1, 6), np.log(1 / 6))],
                           ctc_error_rate=[0.0], att_error_rate=[0.0], tokens=[], duration=0.1)
    handle, group = _group(tmp_path)
    metadata.codec.write(group, metadata.codec.prepare(record, metadata, "u"), metadata, {})
    assert group["ctc"][()].min() == np.float16(LOG_FLOOR)
    handle.close()


def test_plm_features_are_converted_and_checked_before_writing(tmp_path):
    metadata = StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=0.0, kind="plm", feature_dim=4)
    codec = metadata.codec
    prepared = codec.prepare(PLMRecord(features=np.ones((3, 4)), tokens=[3, 4], duration=1.0), metadata, "u")
    assert prepared.features.dtype == np.float16
    with pytest.raises(TeacherStoreError, match="exceeds the float16 range"):
        codec.prepare(PLMRecord(features=np.full((3, 4), 1e6), tokens=[3, 4]), metadata, "u")
    with pytest.raises(TeacherStoreError, match="expected \\(3, 4\\)"):
        codec.prepare(PLMRecord(features=np.ones((2, 4)), tokens=[3, 4]), metadata, "u")
    handle, group = _group(tmp_path)
    codec.write(group, prepared, metadata, {})
    group.attrs["tokens"], group.attrs["duration"] = np.asarray([3, 4]), 1.0
    back = codec.read(group, metadata)
    handle.close()
    assert back.features.dtype == np.float32 and back.features.shape == (3, 4) and back.tokens == [3, 4]


def test_the_codecs_name_the_arrays_that_must_be_finite():
    record = TeacherRecord(ctc_logprobs=[np.zeros((2, 6))], att_logprobs=[np.zeros((1, 6))], ctc_error_rate=[0.0],
                           att_error_rate=[0.0], tokens=[])
    assert len(CODECS["asr"].arrays(record)) == 2
    assert len(CODECS["plm"].arrays(PLMRecord(features=np.zeros((1, 4)), tokens=[]))) == 1


def test_expand_top_k_spreads_the_remaining_mass():
    dense = expand_top_k(np.log([[0.5, 0.3]]), np.array([[0, 5]]), 6)
    assert np.allclose(np.exp(dense), [[0.5, 0.05, 0.05, 0.05, 0.05, 0.3]])
