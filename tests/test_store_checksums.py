import h5py
import numpy as np
import pytest

from hieradist_lobes.store_checksums import (
    CHECKSUM_ATTRIBUTE,
    attributes_digest,
    attributes_problem,
    create_checksummed_dataset,
    decode_ids,
    encode_ids,
    has_checksums,
    seal_attributes,
)


def _part(path, checksums=True):
    with h5py.File(path, "w") as handle:
        handle.attrs["labels"] = '["<blank>", "a"]'
        handle.attrs["frame_rate"] = 50.0
        handle.attrs["top_k"] = np.int64(0)
        create_checksummed_dataset(handle, "ids", encode_ids(["u1", "u2"]), checksums)
        if checksums:
            seal_attributes(handle)
    return path


def test_the_digest_covers_every_attribute_but_itself_in_any_order():
    attributes = {"a": 1, "b": "x", "c": np.array([1.5, 2.5])}
    digest = attributes_digest(attributes)
    assert digest == attributes_digest({"c": [1.5, 2.5], "b": "x", "a": np.int64(1)})
    assert digest == attributes_digest({**attributes, CHECKSUM_ATTRIBUTE: "anything"})
    for name, other in [("a", 2), ("b", "y"), ("c", np.array([1.5, 2.0]))]:
        assert attributes_digest({**attributes, name: other}) != digest
    assert attributes_digest({**attributes, "d": 0}) != digest


@pytest.mark.parametrize("change", ["rewrite", "add", "delete", "drop_checksum"])
def test_a_sealed_part_whose_attributes_change_is_named(tmp_path, change):
    path = _part(tmp_path / "part.h5")
    with h5py.File(path, "r") as handle:
        assert has_checksums(handle) and attributes_problem(handle) is None
    with h5py.File(path, "a") as handle:
        if change == "rewrite":
            handle.attrs["labels"] = '["<blank>", "b"]'  # same length, another label
        elif change == "add":
            handle.attrs["extra"] = 1
        elif change == "delete":
            del handle.attrs["frame_rate"]
        else:
            del handle.attrs[CHECKSUM_ATTRIBUTE]
    with h5py.File(path, "r") as handle:
        expected = "is missing" if change == "drop_checksum" else "do not match the checksum"
        assert expected in attributes_problem(handle)


def test_a_part_written_without_checksums_has_no_problem_to_report(tmp_path):
    path = _part(tmp_path / "part.h5", checksums=False)
    with h5py.File(path, "r") as handle:
        assert not has_checksums(handle) and attributes_problem(handle) is None
        assert not handle["ids"].fletcher32


@pytest.mark.parametrize("data", [np.arange(7, dtype=np.int64), np.zeros((0,), np.float32),
                                  np.ones((3, 2), np.float16)])
def test_checksummed_datasets_hold_the_array_whole_in_one_chunk(tmp_path, data):
    with h5py.File(tmp_path / "part.h5", "w") as handle:
        dataset = create_checksummed_dataset(handle, "x", data)
        assert dataset.fletcher32 and dataset.chunks == (max(1, len(data)),) + data.shape[1:]
        assert dataset.dtype == data.dtype and np.array_equal(dataset[()], data)


def test_a_changed_byte_in_a_checksummed_dataset_fails_its_read(tmp_path):
    path = tmp_path / "part.h5"
    with h5py.File(path, "w") as handle:
        offset = create_checksummed_dataset(handle, "x", np.arange(100, dtype=np.int64)).id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 80] ^= 0x01  # value 10 becomes 11: finite, plausible, wrong
    path.write_bytes(bytes(raw))
    with h5py.File(path, "r") as handle, pytest.raises(OSError, match="filter returned failure"):
        handle["x"][()]


@pytest.mark.parametrize("ids", [["u1", "u2"], ["ü-1", "日本-2", ""], ["a" * 300]])
def test_ids_round_trip_as_fixed_length_utf8(ids):
    encoded = encode_ids(ids)
    assert encoded.dtype.kind == "S" and decode_ids(encoded) == ids


def test_decode_ids_reads_variable_length_strings_of_older_parts(tmp_path):
    with h5py.File(tmp_path / "part.h5", "w") as handle:
        handle.create_dataset("ids", data=np.array(["u1", "ü2"], dtype=object), dtype=h5py.string_dtype())
        assert decode_ids(handle["ids"][()]) == ["u1", "ü2"]
