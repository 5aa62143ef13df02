import json
import re
import os

import numpy as np
import pytest
import torch

from hieradist_lobes.teacher_store import (
    PLMRecord,
    StoreMetadata,
    TeacherRecord,
    TeacherStore,
    TeacherStoreError,
    TeacherStoreWriter,
    expand_top_k,
    main,
)
from hieradist_lobes.files import WriteError
from hieradist_lobes.store_checksums import seal_attributes

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


def _write_until_killed(path, metadata, make_record, ids, killed_at, part_size):
    """Write ``ids`` as ``make_record(number)`` until a KeyboardInterrupt at ``killed_at``."""
    with pytest.raises(KeyboardInterrupt):
        with TeacherStoreWriter(str(path), "train", metadata, part_size=part_size) as writer:
            for number, utt in enumerate(ids):
                if number == killed_at:
                    raise KeyboardInterrupt
                writer.add(utt, make_record(number))


def _resume(path, metadata, make_record, ids, part_size):
    """Write the ``ids`` the store does not have yet; return the writer."""
    writer = TeacherStoreWriter(str(path), "train", metadata, part_size=part_size)
    done = writer.done_ids()
    with writer:
        for number, utt in enumerate(ids):
            if utt not in done:
                writer.add(utt, make_record(number))
    return writer


def test_interrupted_write_resumes_without_bad_reads(tmp_path):
    ids = [f"u{i}" for i in range(10)]
    _write_until_killed(tmp_path, _metadata(), _record, ids, killed_at=6, part_size=4)
    # One complete part (u0-u3); u4, u5 were in the unfinished part.
    leftovers = [name for name in os.listdir(tmp_path / "train") if name.endswith(".tmp")]
    assert len(leftovers) == 1
    store = TeacherStore(str(tmp_path))
    assert sorted(store.ids()) == ids[:4]
    with pytest.raises(TeacherStoreError, match="u5 is not in the teacher store"):
        store.get("u5")
    assert TeacherStoreWriter(str(tmp_path), "train", _metadata(), part_size=4).done_ids() == set(ids[:4])
    assert not [name for name in os.listdir(tmp_path / "train") if name.endswith(".tmp")]
    _resume(tmp_path, _metadata(), _record, ids, part_size=4)
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


# ---- plm stores: a pre-trained language model's per-token features ----

PLM_LABELS = ["<blank>", "<bos>", "<eos>", "the", "gar", "##den", "cat"]


def _plm_metadata(**changes):
    values = dict(labels=PLM_LABELS, teachers=[{"name": "bert", "layer": -1}], frame_rate=0.0, kind="plm",
                  feature_dim=6)
    values.update(changes)
    return StoreMetadata(**values)


def _plm_record(seed, dim=6):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, len(PLM_LABELS), size=int(rng.integers(0, 5))).tolist()
    return PLMRecord(features=rng.normal(0, 2, size=(len(tokens) + 1, dim)).astype(np.float32), tokens=tokens,
                     duration=0.5 + seed / 10)


def _write_plm(path, ids, split="train", metadata=None, **options):
    records = {}
    with TeacherStoreWriter(str(path), split, metadata or _plm_metadata(), **options) as writer:
        for number, utt in enumerate(ids):
            records[utt] = _plm_record(number)
            writer.add(utt, records[utt])
    return records


@pytest.mark.parametrize("dtype, tolerance", [("float32", 0.0), ("float16", 2e-3)])
def test_plm_round_trip(tmp_path, dtype, tolerance):
    records = _write_plm(tmp_path, [f"u{i}" for i in range(5)], metadata=_plm_metadata(dtype=dtype), part_size=2)
    store = TeacherStore(str(tmp_path))
    assert store.kind == "plm" and store.metadata.feature_dim == 6 and store.metadata.labels == PLM_LABELS
    assert len(store) == 5 and len(os.listdir(tmp_path / "train")) == 3
    for utt, expected in records.items():
        got = store.get(utt)
        assert isinstance(got, PLMRecord) and got.features.dtype == np.float32
        assert got.features.shape == (len(expected.tokens) + 1, 6)
        assert np.abs(got.features - expected.features).max() <= tolerance * np.abs(expected.features).max()
        assert got.tokens == list(expected.tokens) and got.duration == pytest.approx(expected.duration)
    with __import__("h5py").File(store._files[0], "r") as handle:
        assert handle.attrs["kind"] == "plm" and handle.attrs["feature_dim"] == 6
        assert handle.attrs["layout"] == 2 and handle["fields"]["plm"].dtype == np.dtype(dtype)
        assert sorted(handle["fields"]) == ["duration", "plm", "tokens"]


def test_plm_store_resumes(tmp_path):
    ids = [f"u{i}" for i in range(7)]
    _write_until_killed(tmp_path, _plm_metadata(), _plm_record, ids, killed_at=4, part_size=3)
    assert TeacherStoreWriter(str(tmp_path), "train", _plm_metadata(), part_size=3).done_ids() == set(ids[:3])
    _resume(tmp_path, _plm_metadata(), _plm_record, ids, part_size=3)
    store = TeacherStore(str(tmp_path))
    assert sorted(store.ids()) == ids
    assert np.allclose(store.get("u5").features, _plm_record(5).features, atol=1e-2)


@pytest.mark.parametrize("changes, field", [({"feature_dim": 8}, "feature_dim"),
                                            ({"labels": PLM_LABELS + ["dog"]}, "labels"),
                                            ({"teachers": [{"name": "bert", "layer": 3}]}, "teachers"),
                                            ({"dtype": "float32"}, "dtype")])
def test_plm_store_refuses_other_metadata(tmp_path, changes, field):
    _write_plm(tmp_path, ["u0"])
    with pytest.raises(TeacherStoreError, match=f"other {field}"):
        TeacherStoreWriter(str(tmp_path), "valid", _plm_metadata(**changes))


def test_plm_and_asr_stores_do_not_mix(tmp_path):
    _write_plm(tmp_path / "plm", ["u0"])
    with pytest.raises(TeacherStoreError, match="other kind"):
        TeacherStoreWriter(str(tmp_path / "plm"), "train", _metadata())
    with TeacherStoreWriter(str(tmp_path / "plm"), "train", _plm_metadata()) as writer:
        with pytest.raises(TeacherStoreError, match="TeacherRecord cannot go into a plm store"):
            writer.add("u1", _record(1))
    with TeacherStoreWriter(str(tmp_path / "asr"), "train", _metadata()) as writer:
        with pytest.raises(TeacherStoreError, match="PLMRecord cannot go into a asr store"):
            writer.add("u1", _plm_record(1))


def test_plm_record_checks(tmp_path):
    good = _plm_record(3)
    cases = {
        "features of shape": PLMRecord(features=good.features[:-1], tokens=good.tokens),
        r"expected \(\d+, 6\)": PLMRecord(features=good.features[:, :4], tokens=good.tokens),
        "outside the store's 7 labels": PLMRecord(features=np.zeros((2, 6)), tokens=[7]),
        "inf or NaN": PLMRecord(features=np.full((1, 6), np.nan), tokens=[]),
        "float16 range": PLMRecord(features=np.full((1, 6), 1e5), tokens=[]),
    }
    with TeacherStoreWriter(str(tmp_path), "train", _plm_metadata()) as writer:
        for message, record in cases.items():
            with pytest.raises(TeacherStoreError, match=message):
                writer.add("bad", record)
        writer.add("good", good)  # nothing of the refused records was left behind
    assert TeacherStore(str(tmp_path)).ids() == ["good"]
    # float32 stores take large features.
    with TeacherStoreWriter(str(tmp_path / "f32"), "train", _plm_metadata(dtype="float32")) as writer:
        writer.add("big", PLMRecord(features=np.full((1, 6), 1e5), tokens=[]))
    assert TeacherStore(str(tmp_path / "f32")).get("big").features.max() == 1e5


@pytest.mark.parametrize("changes, message", [({"kind": "lm"}, "kind must be"), ({"feature_dim": 0}, "feature_dim"),
                                              ({"top_k": 4}, "top_k")])
def test_plm_metadata_is_validated(changes, message):
    with pytest.raises(ValueError, match=message):
        _plm_metadata(**changes)


def test_parts_without_kind_read_as_asr(tmp_path):
    import h5py

    records = _write(tmp_path, ["u0", "u1"], checksums=False)
    for part in (tmp_path / "train").iterdir():
        with h5py.File(part, "a") as handle:  # as written before plm stores (and checksums) existed
            del handle.attrs["kind"], handle.attrs["feature_dim"]
    store = TeacherStore(str(tmp_path))
    assert store.kind == "asr" and store.get("u1").tokens == list(records["u1"].tokens)
    with TeacherStoreWriter(str(tmp_path), "train", _metadata()) as writer:  # resuming is allowed
        writer.add("u2", _record(2))
    assert len(TeacherStore(str(tmp_path))) == 3


def test_plm_info_command(tmp_path, capsys):
    records = _write_plm(tmp_path, ["u0", "u1", "u2"])
    _write_plm(tmp_path, ["v0"], split="valid")
    main(["info", str(tmp_path)])
    text = capsys.readouterr().out
    tokens = sum(len(r.tokens) for r in records.values())
    assert "train: 3 utterances" in text and f"{tokens} tokens" in text and "valid: 1 utterances" in text
    assert "feature dim 6" in text and "float16" in text and "PLM features of bert" in text
    assert "MiB per hour of audio" in text and "CTC" not in text
    main(["info", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "plm" and summary["splits"]["train"]["tokens"] == tokens
    assert summary["feature_dim"] == 6 and summary["megabytes_per_hour"] > 0
    hours = sum(r.duration for r in records.values()) / 3600
    assert summary["splits"]["train"]["hours"] == pytest.approx(hours, abs=1e-3)


def test_a_second_writer_stops_and_never_deletes_the_first_ones_part(tmp_path):
    first = TeacherStoreWriter(str(tmp_path), "train", _metadata(), part_size=10)
    first.add("u0", _record(0))
    in_progress = [name for name in os.listdir(tmp_path / "train") if name.endswith(".tmp")]
    assert in_progress
    with pytest.raises(TeacherStoreError, match=f"another process .*pid {os.getpid()}.* is writing rank 0"):
        TeacherStoreWriter(str(tmp_path), "train", _metadata())
    assert [name for name in os.listdir(tmp_path / "train") if name.endswith(".tmp")] == in_progress
    first.add("u1", _record(1))
    first.close()
    assert sorted(TeacherStore(str(tmp_path)).ids()) == ["u0", "u1"]
    with TeacherStoreWriter(str(tmp_path), "train", _metadata()) as writer:  # the lock is free again
        writer.add("u2", _record(2))


def test_a_truncated_or_overwritten_part_is_named(tmp_path):
    _write(tmp_path, ["u0", "u1", "u2"], part_size=2)
    part = sorted((tmp_path / "train").iterdir())[1]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    with pytest.raises(TeacherStoreError, match=f"part {part} is damaged .* Delete this part file and run .*"
                                                r"\(save_teachers.py, or save_plm_features.py"):
        TeacherStore(str(tmp_path))
    part.write_text("not an HDF5 file")
    with pytest.raises(TeacherStoreError, match=f"part {part} is damaged"):
        TeacherStore(str(tmp_path))


def test_non_finite_values_are_refused_when_written_and_when_read(tmp_path):
    import h5py

    record = _record(0)
    record.ctc_logprobs[1][2, 3] = np.nan
    with TeacherStoreWriter(str(tmp_path), "train", _metadata()) as writer:
        with pytest.raises(TeacherStoreError, match="utterance bad: ctc_logprobs contain NaN"):
            writer.add("bad", record)
        writer.add("u0", _record(1))
    with pytest.raises(TeacherStoreError, match="features contain inf or NaN"):
        with TeacherStoreWriter(str(tmp_path / "plm"), "train", _plm_metadata()) as writer:
            writer.add("bad", PLMRecord(features=np.full((3, 6), np.inf), tokens=[4, 5], duration=1.0))
    part = next((tmp_path / "train").iterdir())
    with h5py.File(part, "a") as handle:  # damaged on disk after writing
        handle["fields/att"][0, 0] = np.nan  # u0's first row
    with pytest.raises(TeacherStoreError, match=f"utterance u0 of teacher store part {part} is damaged "
                                                r"\(values are NaN or inf\)"):
        TeacherStore(str(tmp_path)).get("u0")


def test_copy_stops_at_a_damaged_utterance_and_resumes_once_it_is_rewritten(tmp_path, capsys):
    import h5py

    records = _write(tmp_path / "src", [f"u{i}" for i in range(5)], metadata=_metadata(dtype="float32"), part_size=2)
    damaged = sorted((tmp_path / "src" / "train").iterdir())[1]  # holds u2 and u3
    with h5py.File(damaged, "a") as handle:
        handle["fields/ctc"][0, 0] = np.inf  # u2's first row
    with pytest.raises(SystemExit) as exited:
        main(["copy", str(tmp_path / "src"), str(tmp_path / "dst")])
    message = capsys.readouterr().err
    assert exited.value.code == 1
    assert f"utterance u2 of teacher store part {damaged} is damaged (values are NaN or inf)" in message
    assert "Delete this part file" in message and "Traceback" not in message
    # The interrupted destination part is left as .tmp, dropped when the copy resumes.
    assert [path.name for path in (tmp_path / "dst" / "train").iterdir()] == ["part-r0-00000.h5.tmp"]
    # The user follows the message: the part is deleted and its utterances written again.
    damaged.unlink()
    with TeacherStoreWriter(str(tmp_path / "src"), "train", _metadata(dtype="float32")) as writer:
        for utt in ("u2", "u3"):
            writer.add(utt, records[utt])
    main(["copy", str(tmp_path / "src"), str(tmp_path / "dst")])
    assert "copied 5 utterances" in capsys.readouterr().out
    _assert_same_records(TeacherStore(str(tmp_path / "dst")), records)


def test_plan_batches_does_not_depend_on_what_is_done():
    from hieradist_lobes.teacher_store import plan_batches

    items = [(f"u{i}", float(i % 4)) for i in range(10)]
    one = plan_batches(items, 3)
    assert [len(batch) for batch in one] == [3, 3, 3, 1]
    assert one[0] == ["u3", "u7", "u2"]  # longest first, ties by ID
    shared = plan_batches(items, 3, 0, 2) + plan_batches(items, 3, 1, 2)
    assert sorted(map(tuple, shared)) == sorted(map(tuple, one))


class _Killed(Exception):
    pass


def _batch_dependent_records(calls):
    """Records whose values depend on which utterances share the batch (as padded teacher outputs do)."""

    def records_of(batches):
        for batch in batches:
            calls.append(list(batch))
            neighbours = float(sum(int(utt[1:]) for utt in batch))
            yield {utt: PLMRecord(features=np.full((2, 6), neighbours + int(utt[1:]) / 100), tokens=[4], duration=1.0)
                   for utt in batch}

    return records_of


@pytest.mark.parametrize("killed_after", [0, 2, 3, 6])
def test_fill_store_resumes_to_the_uninterrupted_store(tmp_path, killed_after):
    from hieradist_lobes.teacher_store import fill_store

    lengths = {f"u{i}": float(i % 4) for i in range(11)}
    calls = []
    reference = str(tmp_path / "reference")
    assert fill_store(TeacherStoreWriter(reference, "train", _plm_metadata(), part_size=4), lengths, 3, 1,
                      _batch_dependent_records(calls), "test", progress=False) == 11

    resumed = str(tmp_path / "resumed")
    writer = TeacherStoreWriter(resumed, "train", _plm_metadata(), part_size=4)
    original_add = writer.add

    def add_then_die(utt, record, end_of_batch=True):
        if len(added) == killed_after:
            raise _Killed
        added.append(utt)
        original_add(utt, record, end_of_batch)

    added = []
    writer.add = add_then_die
    with pytest.raises(_Killed):
        fill_store(writer, lengths, 3, 1, _batch_dependent_records([]), "test", progress=False)
    again = []
    fill_store(TeacherStoreWriter(resumed, "train", _plm_metadata(), part_size=4), lengths, 3, 1,
               _batch_dependent_records(again), "test", progress=False)
    first, second = TeacherStore(reference), TeacherStore(resumed)
    assert sorted(first.ids()) == sorted(second.ids())
    for utt in first.ids():
        assert np.array_equal(first.get(utt).features, second.get(utt).features), utt
    # A finished store computes nothing.
    nothing = []
    assert fill_store(TeacherStoreWriter(resumed, "train", _plm_metadata()), lengths, 3, 1,
                      _batch_dependent_records(nothing), "test", progress=False) == 0
    assert nothing == []


def _write_layout1(path, records, metadata=None, split="train", number=0):
    """A part as written before layout 2 (a group per utterance, small fields as attributes)."""
    import h5py

    metadata = metadata or _metadata()
    folder = path / split
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / f"part-r0-{number:05d}.h5", "w") as handle:
        for key, value in metadata.to_attrs().items():
            handle.attrs[key] = value
        handle.attrs["split"] = split
        utts = handle.create_group("utts")
        for utt, record in records.items():
            group = utts.create_group(utt)
            fields = metadata.codec.encode(record, metadata)
            for name in metadata.codec.index_fields:
                value = fields.pop(name)
                group.attrs[name] = float(value[0]) if name == "duration" else value
            for name, array in fields.items():
                group.create_dataset(name, data=array)


def _assert_same_records(store, records, tolerance=0.02):
    for utt, expected in records.items():
        got = store.get(utt)
        assert got.tokens == list(expected.tokens) and got.duration == pytest.approx(expected.duration)
        assert got.ctc_error_rate == pytest.approx(expected.ctc_error_rate)
        for a, b in zip(got.ctc_logprobs + got.att_logprobs, expected.ctc_logprobs + expected.att_logprobs):
            assert a.shape == b.shape and np.abs(a - b).max() <= tolerance


@pytest.mark.parametrize("top_k", [0, 3])
def test_layout1_parts_are_read_resumed_and_copied_to_layout2(tmp_path, capsys, top_k):
    import h5py

    old = tmp_path / "old"
    records = {f"u{i}": _record(i) for i in range(5)}
    _write_layout1(old, records, _metadata(top_k=top_k))
    store = TeacherStore(str(old))
    assert sorted(store.ids()) == sorted(records)
    if not top_k:
        _assert_same_records(store, records)
    before = store.summary()
    # Resuming an old store adds a layout-2 part beside the layout-1 one.
    with TeacherStoreWriter(str(old), "train", _metadata(top_k=top_k)) as writer:
        assert writer.done_ids() == set(records)
        records["u5"] = _record(5)
        writer.add("u5", records["u5"])
    store = TeacherStore(str(old))
    assert len(store) == 6 and store.get("u5").tokens == list(records["u5"].tokens)

    main(["copy", str(old), str(tmp_path / "new")])
    assert "copied 6 utterances" in capsys.readouterr().out
    new = TeacherStore(str(tmp_path / "new"))
    for utt in records:  # the stored arrays themselves, not only the decoded records
        old_fields, new_fields = store.fields(utt), new.fields(utt)
        assert sorted(old_fields) == sorted(new_fields)
        for name in old_fields:
            assert np.array_equal(old_fields[name], new_fields[name]) and old_fields[name].dtype == new_fields[name].dtype
    if not top_k:
        _assert_same_records(new, records)
    summary = new.summary()
    assert summary["splits"]["train"]["utterances"] == 6
    assert before["splits"]["train"]["hours"] == pytest.approx(
        summary["splits"]["train"]["hours"] - records["u5"].duration / 3600, abs=1e-3)
    for part in new._files:
        with h5py.File(part, "r") as handle:
            assert handle.attrs["layout"] == 2 and "utts" not in handle
    main(["copy", str(old), str(tmp_path / "new")])  # resumable: nothing left to copy
    assert "copied 0 utterances" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["copy", str(old), str(old)])
    assert exited.value.code == 1 and "not onto itself" in capsys.readouterr().err


def test_a_part_of_an_unknown_layout_is_refused(tmp_path):
    import h5py

    _write(tmp_path, ["u0"])
    part = next((tmp_path / "train").iterdir())
    with h5py.File(part, "a") as handle:  # as a newer version would write it, its metadata sealed
        handle.attrs["layout"] = 3
        seal_attributes(handle)
    with pytest.raises(TeacherStoreError, match=f"part {part} has layout 3, .*newer version"):
        TeacherStore(str(tmp_path))


def test_an_id_added_twice_or_other_fields_in_a_part_are_refused(tmp_path):
    with TeacherStoreWriter(str(tmp_path), "train", _metadata(), part_size=10) as writer:
        writer.add("u0", _record(0))
        with pytest.raises(TeacherStoreError, match="u0 was already added"):
            writer.add("u0", _record(1))
        fields = _metadata().codec.encode(_record(1), _metadata())
        del fields["att"]
        with pytest.raises(TeacherStoreError, match=r"u1 has the fields \[.*\], the part's other utterances"):
            writer._add_fields("u1", fields, end_of_batch=True)
        writer.add("u1", _record(1))
    assert sorted(TeacherStore(str(tmp_path)).ids()) == ["u0", "u1"]


@pytest.mark.parametrize("part_size", [1, 3, 50])
def test_utterances_of_every_length_round_trip_in_any_part_size(tmp_path, part_size):
    """Rows of each utterance sit between its offsets: empty, single-row and long arrays side by side."""
    rng = np.random.default_rng(part_size)
    records = {}
    for number in range(12):
        tokens = [] if number % 4 == 0 else rng.integers(1, 11, size=int(rng.integers(1, 9))).tolist()
        records[f"u{number:02d}"] = _record(number, frames=int(rng.choice([1, 2, 300])), tokens=tokens)
    with TeacherStoreWriter(str(tmp_path), "train", _metadata(dtype="float32"), part_size=part_size) as writer:
        for utt in rng.permutation(sorted(records)):
            writer.add(str(utt), records[str(utt)])
    store = TeacherStore(str(tmp_path))
    assert len(os.listdir(tmp_path / "train")) == -(-12 // part_size)
    _assert_same_records(store, records, tolerance=1e-6)


def test_matrix_chunks_stay_small_for_wide_vocabularies(tmp_path):
    import h5py

    from hieradist_lobes.teacher_store import CHUNK_BYTES

    labels = ["<blank>"] + [f"w{i}" for i in range(5000)] + ["<bos>", "<eos>"]
    rng = np.random.default_rng(0)
    record = TeacherRecord(ctc_logprobs=[np.log(rng.dirichlet(np.ones(len(labels)), size=40)).astype(np.float32)],
                           att_logprobs=[np.log(np.full((3, len(labels)), 1 / len(labels)))],
                           ctc_error_rate=[1.0], att_error_rate=[2.0], tokens=[5, 6], duration=0.8)
    with TeacherStoreWriter(str(tmp_path), "train", _metadata(labels=labels, teachers=[{"name": "t"}])) as writer:
        writer.add("u0", record)
    part = next((tmp_path / "train").iterdir())
    with h5py.File(part, "r") as handle:
        chunk_rows = handle["fields/ctc"].chunks[0]
        assert chunk_rows == 16 and 16 * len(labels) * 2 > CHUNK_BYTES  # at least 16 rows, even over the target
        duration = handle["fields/duration"]
        assert duration.chunks == duration.shape and duration.fletcher32  # small fields: one checksummed chunk
    got = TeacherStore(str(tmp_path)).get("u0")
    assert np.abs(got.ctc_logprobs[0] - record.ctc_logprobs[0]).max() < 0.02


def test_copy_can_compress_the_matrices(tmp_path):
    import h5py

    records = _write(tmp_path / "plain", [f"u{i}" for i in range(4)], frames=100)
    main(["copy", str(tmp_path / "plain"), str(tmp_path / "gzip"), "--compression", "gzip"])
    store = TeacherStore(str(tmp_path / "gzip"))
    _assert_same_records(store, records)
    with h5py.File(store._files[0], "r") as handle:
        assert handle["fields/ctc"].compression == "gzip" and handle["fields/att"].compression == "gzip"
    with pytest.raises(ValueError, match="compression must be one of gzip, lzf or None, got 'zstd'"):
        TeacherStoreWriter(str(tmp_path / "zstd"), "train", _metadata(), compression="zstd")
    assert not (tmp_path / "zstd").exists()  # refused before anything is made


def test_a_store_is_extended_by_the_same_teachers_whatever_they_stored_first(tmp_path):
    """Another split, a frame rate measured a little differently (as stores before 2026-12-03 did, on the
    first utterance) and another list of splits in the options extend the store; its parts then agree."""
    _write(tmp_path, ["u1", "u2"], metadata=_metadata(frame_rate=25.0, options={"splits": ["train"]}))
    _write(tmp_path, ["v1"], split="valid",
           metadata=_metadata(frame_rate=25.8, options={"splits": ["train", "valid"]}))
    store = TeacherStore(str(tmp_path))
    assert store.splits() == ["train", "valid"] and store.metadata.frame_rate == 25.0
    import h5py

    rates = set()
    for part in store._files:
        with h5py.File(part, "r") as handle:
            rates.add(float(handle.attrs["frame_rate"]))
    assert rates == {25.0}


def test_teachers_with_another_frame_rate_or_labels_cannot_extend_a_store(tmp_path):
    _write(tmp_path, ["u1"], metadata=_metadata(frame_rate=25.0))
    with pytest.raises(TeacherStoreError, match=r"made by teachers whose CTC gives 25 frames per second; these "
                                                r"give 12.5 \(other teachers, or other feature or subsampling"):
        _write(tmp_path, ["v1"], split="valid", metadata=_metadata(frame_rate=12.5))
    with pytest.raises(TeacherStoreError, match="was made with other labels, frame_rate; delete it"):
        _write(tmp_path, ["v1"], split="valid", metadata=_metadata(frame_rate=12.5, labels=LABELS[:-1] + ["<e>"]))


def _usage(free):
    import collections

    return collections.namedtuple("usage", "total used free")(10 * free, 9 * free, free)


def test_a_full_disk_stops_the_writer_with_one_message_and_keeps_the_finished_parts(tmp_path, monkeypatch):
    """The writer stops before HDF5 meets the full disk (which it does not survive); the unfinished part is
    removed, the finished ones stay, and a run with room again completes the store."""
    import hieradist_lobes.teacher_store as teacher_store

    ids = [f"u{i}" for i in range(7)]
    written = []
    real_usage = teacher_store.shutil.disk_usage

    def filling(path):
        written.append(path)
        return _usage(10 * 2**30 if len(written) <= 4 else teacher_store.FREE_SPACE_RESERVE)

    monkeypatch.setattr(teacher_store.shutil, "disk_usage", filling)
    with pytest.raises(WriteError, match=r"writing .*part-r0-00001.h5.tmp failed: the disk is full \(.* MiB free.*\)\."
                                         r" Nothing half-written was left \(the finished parts are kept"):
        _write(tmp_path, ids, part_size=3)
    assert sorted(os.listdir(tmp_path / "train")) == ["part-r0-00000.h5"]
    assert sorted(TeacherStore(str(tmp_path)).ids()) == ["u0", "u1", "u2"]
    monkeypatch.setattr(teacher_store.shutil, "disk_usage", real_usage)
    with TeacherStoreWriter(str(tmp_path), "train", _metadata(), part_size=3) as writer:
        for number, utt in enumerate(ids):
            if utt not in writer.done_ids():
                writer.add(utt, _record(number))
    assert sorted(TeacherStore(str(tmp_path)).ids()) == ids


def test_a_write_that_fails_in_hdf5_names_the_part_and_removes_it(tmp_path, monkeypatch):
    import errno

    import h5py

    def failing_flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "flush", failing_flush)
    with pytest.raises(WriteError, match=r"part-r0-00000.h5.tmp failed: the disk is full \(No space left on "
                                         r"device\)"):
        _write(tmp_path, ["u1", "u2"], part_size=3)
    assert os.listdir(tmp_path / "train") == []
    monkeypatch.undo()
    broken = tmp_path / "other"

    def failing_resize(self, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(h5py.Dataset, "resize", failing_resize)
    with pytest.raises(WriteError, match=r"failed: OSError: \[Errno 5\] Input/output error\. .*fix the cause and "
                                         r"run the same command again"):
        _write(broken, ["u1"])
    assert os.listdir(broken / "train") == []


# ---- integrity: checksums on every dataset and on the metadata ----

def _flip(path, offset, mask=0x01):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


def _chunk_offset(part, name):
    import h5py

    with h5py.File(part, "r") as handle:
        return handle[name].id.get_chunk_info(0).byte_offset


@pytest.mark.parametrize("kind", ["asr", "plm"])
def test_every_dataset_of_a_part_has_checksums_and_its_metadata_one_too(tmp_path, kind):
    import h5py

    from hieradist_lobes.store_checksums import attributes_problem, has_checksums

    if kind == "asr":
        _write(tmp_path, ["u0", "u1"])
    else:
        _write_plm(tmp_path, ["u0", "u1"])
    part = next((tmp_path / "train").iterdir())
    with h5py.File(part, "r") as handle:
        datasets = []
        handle.visititems(lambda name, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
        assert len(datasets) > 5 and all(dataset.fletcher32 for dataset in datasets)
        assert has_checksums(handle) and attributes_problem(handle) is None
        assert handle.id.get_create_plist().get_version()[0] >= 2  # superblock with checksummed metadata


def test_a_changed_value_is_found_when_read_and_by_verify_info_and_copy(tmp_path, capsys):
    from hieradist_lobes.teacher_store import DamagedPartError, verify_store

    records = _write(tmp_path / "s", [f"u{i}" for i in range(6)], metadata=_metadata(dtype="float32"), part_size=2)
    parts = sorted((tmp_path / "s" / "train").iterdir())
    damaged = parts[1]  # u2 and u3; u2's rows come first in each matrix
    _flip(damaged, _chunk_offset(damaged, "fields/ctc") + 4 * 3)  # the 4th float of u2: finite and wrong
    store = TeacherStore(str(tmp_path / "s"))  # the index is intact: the store opens
    for utt in ("u0", "u1", "u4", "u5"):
        assert store.get(utt).tokens == list(records[utt].tokens)
    with pytest.raises(DamagedPartError, match=f"utterance u2 of teacher store part {damaged} is damaged "
                                               r"\(stored bytes do not match their checksum"):
        store.get("u2")
    checks = verify_store(str(tmp_path / "s"), progress=False)
    assert [check.path for check in checks if check.problem] == [str(damaged)]
    assert "utterance u2" in next(check.problem for check in checks if check.problem)
    assert sum(check.utterances for check in checks) == 6

    for command in (["verify"], ["info"], ["info", "--json"]):
        with pytest.raises(SystemExit) as exited:
            main(command + [str(tmp_path / "s")])
        captured = capsys.readouterr()
        assert exited.value.code == 1 and f"damaged: {damaged} (utterance u2: stored bytes" in captured.err
        assert "integrity: 1 of 3 parts damaged" in captured.err and "Traceback" not in captured.err
        assert "train: 6 utterances" not in captured.out  # no summary that calls the store healthy
    main(["verify", "--index_only", str(tmp_path / "s")])  # the index alone cannot see it, and says so
    assert "the matrices not" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["copy", str(tmp_path / "s"), str(tmp_path / "copy")])
    assert f"utterance u2 of teacher store part {damaged} is damaged" in capsys.readouterr().err


def test_the_same_change_without_checksums_goes_unnoticed_and_the_store_says_it_cannot_tell(tmp_path, capsys, caplog):
    records = _write(tmp_path / "s", ["u0", "u1"], metadata=_metadata(dtype="float32"), checksums=False)
    part = next((tmp_path / "s" / "train").iterdir())
    _flip(part, _chunk_offset(part, "fields/ctc") + 4 * 3)
    with caplog.at_level("WARNING"):
        changed = TeacherStore(str(tmp_path / "s")).get("u0").ctc_logprobs[0]
    assert "1 of the 1 parts" in caplog.text and "without checksums" in caplog.text and "copy" in caplog.text
    assert np.isfinite(changed).all() and not np.array_equal(changed, records["u0"].ctc_logprobs[0])
    main(["info", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert "train: 2 utterances" in out and f"no checksums: {part}" in out and "go unnoticed" in out
    main(["copy", str(tmp_path / "s"), str(tmp_path / "new")])  # copying adds them
    capsys.readouterr()
    main(["verify", str(tmp_path / "new")])
    assert "integrity: all 1 parts match their checksums (every value read)" in capsys.readouterr().out


def test_metadata_rewritten_in_place_is_refused(tmp_path, capsys):
    import h5py

    _write(tmp_path, ["u0", "u1", "u2"], part_size=2)
    part = sorted((tmp_path / "train").iterdir())[0]
    with h5py.File(part, "a") as handle:  # another vocabulary of the same size: every index would shift
        labels = json.loads(handle.attrs["labels"])
        handle.attrs["labels"] = json.dumps(labels[1:] + labels[:1])
    with pytest.raises(TeacherStoreError, match=f"part {part} is damaged \\(its metadata .* do not match the checksum"):
        TeacherStore(str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main(["verify", str(tmp_path)])
    assert exited.value.code == 1 and f"damaged: {part} (its metadata" in capsys.readouterr().err


def test_offsets_that_do_not_cut_the_rows_are_refused_without_checksums_too(tmp_path):
    import h5py

    _write(tmp_path, ["u0", "u1"], checksums=False)
    part = next((tmp_path / "train").iterdir())
    with h5py.File(part, "a") as handle:
        ends = handle["offsets/ctc"][()]
        ends[1] = ends[2] + 1  # u0 would end after u1
        handle["offsets/ctc"][...] = ends
    with pytest.raises(TeacherStoreError, match=f"part {part} is damaged \\(the offsets of ctc do not cut"):
        TeacherStore(str(tmp_path)).get("u0")


def test_verify_names_parts_that_repeat_an_utterance_or_disagree_on_metadata(tmp_path):
    from hieradist_lobes.teacher_store import verify_store

    import shutil

    store = tmp_path / "store"
    _write(store, ["u0", "u1"])
    # Parts the writer would refuse, put into the store by hand (a bad merge of two stores).
    _write(tmp_path / "other", ["u1"], split="valid")
    _write(tmp_path / "third", ["v0"], split="test", metadata=_metadata(teachers=[{"name": "tea0"}, {"name": "other"}]))
    shutil.copytree(tmp_path / "other" / "valid", store / "valid")
    shutil.copytree(tmp_path / "third" / "test", store / "test")
    problems = {os.path.basename(os.path.dirname(check.path)): check.problem
                for check in verify_store(str(store), progress=False)}
    assert [problem for problem in problems.values() if problem and "utterance u1 is also in" in problem]
    assert "teachers" in problems["test"]
    assert sum(problem is None for problem in problems.values()) == 1


def test_a_byte_changed_anywhere_in_a_part_is_refused_or_changes_nothing(tmp_path):
    """Positions across the whole file (metadata, chunk indexes, values, free space): every read either
    stops with a TeacherStoreError or returns what was written, never a traceback or other values."""
    import shutil

    from hieradist_lobes.teacher_store import verify_store

    _write(tmp_path / "clean", [f"u{i}" for i in range(3)], metadata=_metadata(dtype="float32"))
    reference = TeacherStore(str(tmp_path / "clean"))
    expected = {utt: reference.fields(utt) for utt in reference.ids()}
    reference.close()
    part_name = os.listdir(tmp_path / "clean" / "train")[0]
    size = (tmp_path / "clean" / "train" / part_name).stat().st_size
    refused = unchanged = 0
    for offset in np.random.default_rng(0).choice(size, 150, replace=False):
        work = tmp_path / f"flip{offset}"
        shutil.copytree(tmp_path / "clean", work)
        _flip(work / "train" / part_name, int(offset), 0x5A)
        try:
            store = TeacherStore(str(work))
            got = {utt: store._read_checked(utt)[0] for utt in store.ids()}
            store.close()
        except TeacherStoreError:
            refused += 1
            assert any(check.problem for check in verify_store(str(work), progress=False))
        else:
            unchanged += 1
            assert got.keys() == expected.keys()
            for utt, fields in expected.items():
                assert fields.keys() == got[utt].keys()
                assert all(np.array_equal(fields[name], got[utt][name]) for name in fields)
        shutil.rmtree(work)
    assert refused > 100  # most of a part is values, indexes and metadata, all checked


def test_the_report_lists_every_damaged_part_and_only_a_few_parts_without_checksums():
    from hieradist_lobes.teacher_store import PartCheck, format_checks

    checks = [PartCheck(f"s/train/part-r0-{n:05d}.h5", "train", 2, checksums=False) for n in range(8)]
    checks += [PartCheck(f"s/valid/part-r0-{n:05d}.h5", "valid", 2, True, "values are NaN or inf") for n in range(7)]
    lines = format_checks(checks).splitlines()
    assert sum(line.startswith("damaged: ") for line in lines) == 7
    assert sum(line.startswith("no checksums: s/") for line in lines) == 5 and "no checksums: 3 more parts" in lines
    assert lines[-1].startswith("integrity: 7 of 15 parts damaged")


def test_a_path_that_is_no_store_is_called_what_it_is(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "killed" / "train").mkdir(parents=True)
    (tmp_path / "killed" / "train" / "part-r0-00000.h5.tmp").write_bytes(b"")
    for path, expected in [(tmp_path / "missing", "does not exist"), (tmp_path / "notes.txt", "is a file"),
                           (tmp_path / "killed", "no complete part files (1 unfinished")]:
        with pytest.raises(TeacherStoreError, match=re.escape(expected)):
            TeacherStore(str(path))
        with pytest.raises(SystemExit) as exited:
            main(["verify", str(path)])
        assert exited.value.code == 1 and expected in capsys.readouterr().err
