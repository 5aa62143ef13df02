"""The store's codecs: what each kind of record holds and how it is written and read."""

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


def _posteriors(rows, rng):
    logits = rng.normal(size=(rows, len(LABELS))).astype(np.float32)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def test_every_kind_has_one_codec():
    assert set(CODECS) == {"asr", "plm"}
    assert isinstance(StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=1.0).codec, PosteriorCodec)
    plm = StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=0.0, kind="plm", feature_dim=4)
    assert isinstance(plm.codec, PLMFeatureCodec)


@pytest.mark.parametrize("top_k", [0, 2])
def test_posteriors_round_trip_through_their_fields(top_k):
    rng = np.random.default_rng(0)
    metadata = StoreMetadata(labels=LABELS, teachers=[{}, {}], frame_rate=25.0, dtype="float32", top_k=top_k)
    record = TeacherRecord(ctc_logprobs=[_posteriors(5, rng), _posteriors(3, rng)],
                           att_logprobs=[_posteriors(3, rng), _posteriors(3, rng)],
                           ctc_error_rate=[10.0, 20.0], att_error_rate=[5.0, 0.0], tokens=[3, 4], duration=0.5)
    codec = metadata.codec
    fields = codec.encode(codec.prepare(record, metadata, "u"), metadata)
    matrices = {"ctc.values", "ctc.indices", "att.values", "att.indices"} if top_k else {"ctc", "att"}
    assert set(fields) == matrices | set(codec.index_fields)
    assert fields["ctc_lengths"].tolist() == [5, 3] and fields["duration"].tolist() == [0.5]
    back = codec.decode(fields, metadata)
    assert back.duration == 0.5 and back.att_error_rate == [5.0, 0.0]
    assert [m.shape for m in back.ctc_logprobs] == [(5, 6), (3, 6)] and len(back.att_logprobs) == 2
    assert back.ctc_error_rate == [10.0, 20.0] and back.tokens == [3, 4]
    if top_k:
        best = np.argsort(-record.ctc_logprobs[0], axis=1)[:, :2]
        assert np.allclose(np.take_along_axis(back.ctc_logprobs[0], best, 1),
                           np.take_along_axis(record.ctc_logprobs[0], best, 1), atol=1e-6)
        assert np.allclose(np.exp(back.ctc_logprobs[0]).sum(1), 1.0, atol=1e-5)
    else:
        assert np.allclose(back.ctc_logprobs[1], record.ctc_logprobs[1], atol=1e-6)


def test_log_posteriors_are_floored_not_infinite():
    metadata = StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=25.0, dtype="float16")
    ctc = np.array([[0.0] + [-np.inf] * 5], dtype=np.float32)  # log(1), then log(0) for five classes
    record = TeacherRecord(ctc_logprobs=[ctc], att_logprobs=[np.full((1, 6), np.log(1 / 6))],
                           ctc_error_rate=[0.0], att_error_rate=[0.0], tokens=[], duration=0.1)
    fields = metadata.codec.encode(metadata.codec.prepare(record, metadata, "u"), metadata)
    assert fields["ctc"].dtype == np.float16 and fields["ctc"].min() == np.float16(LOG_FLOOR)


def test_plm_features_are_converted_and_checked_before_writing():
    metadata = StoreMetadata(labels=LABELS, teachers=[{}], frame_rate=0.0, kind="plm", feature_dim=4)
    codec = metadata.codec
    prepared = codec.prepare(PLMRecord(features=np.ones((3, 4)), tokens=[3, 4], duration=1.0), metadata, "u")
    assert prepared.features.dtype == np.float16
    with pytest.raises(TeacherStoreError, match="exceeds the float16 range"):
        codec.prepare(PLMRecord(features=np.full((3, 4), 1e6), tokens=[3, 4]), metadata, "u")
    with pytest.raises(TeacherStoreError, match="expected \\(3, 4\\)"):
        codec.prepare(PLMRecord(features=np.ones((2, 4)), tokens=[3, 4]), metadata, "u")
    fields = codec.encode(prepared, metadata)
    assert set(fields) == {"plm", "tokens", "duration"} and fields["plm"].dtype == np.float16
    back = codec.decode(fields, metadata)
    assert back.features.dtype == np.float32 and back.features.shape == (3, 4) and back.tokens == [3, 4]


def test_the_codecs_name_the_arrays_that_must_be_finite():
    record = TeacherRecord(ctc_logprobs=[np.zeros((2, 6))], att_logprobs=[np.zeros((1, 6))], ctc_error_rate=[0.0],
                           att_error_rate=[0.0], tokens=[])
    assert len(CODECS["asr"].arrays(record)) == 2
    assert len(CODECS["plm"].arrays(PLMRecord(features=np.zeros((1, 4)), tokens=[]))) == 1


def test_expand_top_k_spreads_the_remaining_mass():
    dense = expand_top_k(np.log([[0.5, 0.3]]), np.array([[0, 5]]), 6)
    assert np.allclose(np.exp(dense), [[0.5, 0.05, 0.05, 0.05, 0.05, 0.3]])
