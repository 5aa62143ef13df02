import json
import os

import numpy as np
import pytest
import torch

from hieradist_lobes.teacher_store import (
    StoreMetadata,
    TeacherRecord,
    TeacherStore,
    TeacherStoreError,
    TeacherStoreWriter,
    expand_top_k,
    main,
)

LABELS = ["<blank>"] + [f"p{i}" for i in range(10)] + ["<bos>", "<eos>"]


def _metadata(**changes):
    values = dict(labels=LABELS, teachers=[{"name": "tea0"}, {"name": "tea1"}], frame_rate=50.0)
    values.update(changes)
    return StoreMetadata(**values)


def _record(seed, frames=None, tokens=None):
    rng = np.random.default_rng(seed)
    frames = frames or int(rng.integers(5, 30))
    tokens = tokens if tokens is not None else rng.integers(1, 11, size=int(rng.integers(1, 6))).tolist()

    def logprobs(rows):
        logits = rng.normal(0, 3, size=(rows, len(LABELS)))
        return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)

    return TeacherRecord(ctc_logprobs=[logprobs(frames), logprobs(frames // 2 + 1)],
                         att_logprobs=[logprobs(len(tokens) + 1), logprobs(len(tokens) + 1)],
                         ctc_error_rate=[rng.uniform(0, 50), rng.uniform(0, 50)],
                         att_error_rate=[rng.uniform(0, 50), rng.uniform(0, 50)], tokens=tokens, duration=frames / 50)


def _write(path, ids, split="train", metadata=None, frames=None, **options):
    records = {}
    with TeacherStoreWriter(str(path), split, metadata or _metadata(), **options) as writer:
        for number, utt in enumerate(ids):
            records[utt] = _record(number, frames=frames)
            writer.add(utt, records[utt])
    return records


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("float16", 0.02)])
def test_round_trip(tmp_path, dtype, tolerance):
    records = _write(tmp_path, [f"u{i}" for i in range(7)], metadata=_metadata(dtype=dtype), part_size=3)
    store = TeacherStore(str(tmp_path))
    assert len(store) == 7 and sorted(store.ids("train")) == sorted(records)
    assert len(os.listdir(tmp_path / "train")) == 3  # parts of 3 + 3 + 1
    for utt, expected in records.items():
        got = store.get(utt)
        for a, b in zip(got.ctc_logprobs + got.att_logprobs, expected.ctc_logprobs + expected.att_logprobs):
            assert a.shape == b.shape and a.dtype == np.float32
            assert np.abs(a - b).max() <= tolerance * max(1.0, np.abs(b).max())
        assert got.tokens == list(expected.tokens)
        assert got.ctc_error_rate == pytest.approx(expected.ctc_error_rate, rel=1e-5)
    assert store.metadata.labels == LABELS and store.metadata.teachers[1]["name"] == "tea1"


def test_top_k_keeps_the_best_classes_and_the_mass(tmp_path):
    records = _write(tmp_path, ["u0", "u1"], metadata=_metadata(top_k=3, dtype="float32"))
    store = TeacherStore(str(tmp_path))
    for utt, expected in records.items():
        got = store.get(utt).ctc_logprobs[0]
        truth = expected.ctc_logprobs[0]
        top = np.argsort(-truth, axis=1)[:, :3]
        assert np.allclose(np.take_along_axis(got, top, 1), np.take_along_axis(truth, top, 1), atol=1e-6)
        assert np.allclose(np.exp(got).sum(1), 1.0, atol=1e-4)
        assert (got.argmax(1) == truth.argmax(1)).all()


def test_expand_top_k_with_all_classes():
    values = np.log(np.array([[0.7, 0.2, 0.1]]))
    dense = expand_top_k(values, np.array([[1, 2, 0]]), 3)
    assert np.allclose(np.exp(dense), [[0.1, 0.7, 0.2]])


def test_float16_and_top_k_are_smaller(tmp_path):
    ids = [f"u{i}" for i in range(20)]
    sizes = {}
    for name, meta in {"f32": _metadata(dtype="float32"), "f16": _metadata(), "top2": _metadata(top_k=2)}.items():
        _write(tmp_path / name, ids, metadata=meta, frames=200)
        sizes[name] = TeacherStore(str(tmp_path / name)).summary()["size_bytes"]
    assert sizes["f16"] < sizes["f32"] and sizes["top2"] < sizes["f16"]


def test_interrupted_write_resumes_without_bad_reads(tmp_path):
    ids = [f"u{i}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        with TeacherStoreWriter(str(tmp_path), "train", _metadata(), part_size=4) as writer:
            for number, utt in enumerate(ids):
                if number == 6:
                    raise KeyboardInterrupt
                writer.add(utt, _record(number))
    # One complete part (u0-u3); u4, u5 were in the unfinished part.
    leftovers = [name for name in os.listdir(tmp_path / "train") if name.endswith(".tmp")]
    assert len(leftovers) == 1
    store = TeacherStore(str(tmp_path))
    assert sorted(store.ids()) == ids[:4]
    with pytest.raises(TeacherStoreError, match="u5 is not in the teacher store"):
        store.get("u5")
    writer = TeacherStoreWriter(str(tmp_path), "train", _metadata(), part_size=4)
    assert writer.done_ids() == set(ids[:4])
    assert not [name for name in os.listdir(tmp_path / "train") if name.endswith(".tmp")]
    with writer:
        for number, utt in enumerate(ids):
            if utt not in writer.done_ids():
                writer.add(utt, _record(number))
    store = TeacherStore(str(tmp_path))
    assert sorted(store.ids()) == sorted(ids)
    assert store.get("u7").tokens == list(_record(7).tokens)


def test_other_metadata_is_refused(tmp_path):
    _write(tmp_path, ["u0"])
    with pytest.raises(TeacherStoreError, match="other labels"):
        TeacherStoreWriter(str(tmp_path), "valid", _metadata(labels=LABELS[:-1] + ["<end>"]))


def test_record_shapes_are_checked(tmp_path):
    record = _record(0)
    record.att_logprobs = [m[:1] for m in record.att_logprobs]
    with TeacherStoreWriter(str(tmp_path), "train", _metadata()) as writer:
        with pytest.raises(TeacherStoreError, match="attention rows"):
            writer.add("bad", record)


def test_empty_store_is_an_error(tmp_path):
    with pytest.raises(TeacherStoreError, match="no complete part files"):
        TeacherStore(str(tmp_path))


class _ById(torch.utils.data.Dataset):
    def __init__(self, store, ids):
        self.store, self.ids = store, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        utt = self.ids[index]
        return utt, torch.from_numpy(self.store.get(utt).ctc_logprobs[0]).sum(), os.getpid()


def test_dataloader_workers_read_by_id_with_shuffling(tmp_path):
    ids = [f"u{i}" for i in range(24)]
    records = _write(tmp_path, ids, part_size=5)
    store = TeacherStore(str(tmp_path))
    loader = torch.utils.data.DataLoader(_ById(store, ids), batch_size=4, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    pids = set()
    for utts, sums, worker_pids in loader:
        pids.update(worker_pids.tolist())
        for utt, total in zip(utts, sums):
            expected = records[utt].ctc_logprobs[0].astype(np.float16).astype(np.float32).sum()
            assert total.item() == pytest.approx(float(expected), rel=1e-4)
    assert os.getpid() not in pids and len(pids) == 2


def test_info_command(tmp_path, capsys):
    _write(tmp_path, ["u0", "u1", "u2"])
    _write(tmp_path, ["v0"], split="valid")
    main(["info", str(tmp_path)])
    text = capsys.readouterr().out
    assert "train: 3 utterances" in text and "valid: 1 utterances" in text
    assert "tea1: CTC error rate" in text and "classes 13" in text and "float16" in text
    main(["info", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["utterances"] == 3 and len(summary["teachers"]) == 2
