"""Checksums that let a teacher-store part prove its bytes are the ones written.

HDF5 reports a truncated file or a broken structure, and the store refuses
NaN and inf, but a byte changed in place inside a matrix (a failing disk, a
bad copy) is just another finite number.  So every dataset of a part is
written with HDF5's Fletcher-32 filter: each chunk carries a checksum that
HDF5 verifies whenever it reads the chunk, and a mismatch fails the read.
The part's attributes (its metadata) live outside any chunk, so their SHA-256
is recorded in one more attribute, :data:`CHECKSUM_ATTRIBUTE`, checked when
the part is opened.

Parts written before checksums existed have neither; they are read as
before, and ``python -m hieradist_lobes.teacher_store copy OLD NEW`` gives
them checksums.

Example
-------
>>> import tempfile, os, h5py, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "part.h5")
>>> with h5py.File(path, "w") as handle:
...     handle.attrs["labels"] = '["a", "b"]'
...     _ = create_checksummed_dataset(handle, "tokens", np.arange(5))
...     seal_attributes(handle)
>>> with h5py.File(path, "r") as handle:
...     attributes_problem(handle), handle["tokens"].fletcher32
(None, True)
>>> with h5py.File(path, "a") as handle:
...     handle.attrs["labels"] = '["a", "c"]'
>>> with h5py.File(path, "r") as handle:
...     attributes_problem(handle)
'its metadata (HDF5 attributes) do not match the checksum written with them'
"""

from __future__ import annotations

import hashlib
import json
from typing import Optional

import numpy as np

#: The part attribute holding the SHA-256 of the part's other attributes.
CHECKSUM_ATTRIBUTE = "attributes_sha256"


def _plain(value: object) -> object:
    """An attribute's value as JSON can write it (h5py returns NumPy scalars and arrays)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def attributes_digest(attributes) -> str:
    """SHA-256 of a part's attributes (all but :data:`CHECKSUM_ATTRIBUTE`), independent of their order.

    Example
    -------
    >>> attributes_digest({"b": 1, "a": "x"}) == attributes_digest({"a": "x", "b": np.int64(1)})
    True
    """
    plain = {str(name): _plain(attributes[name]) for name in attributes if name != CHECKSUM_ATTRIBUTE}
    text = json.dumps(plain, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal_attributes(handle) -> None:
    """Record the checksum of ``handle``'s attributes; call it after the last one is set."""
    handle.attrs[CHECKSUM_ATTRIBUTE] = attributes_digest(handle.attrs)


def has_checksums(handle) -> bool:
    """Whether the part was written with checksums (parts of older versions were not)."""
    return CHECKSUM_ATTRIBUTE in handle.attrs


def attributes_problem(handle) -> Optional[str]:
    """What is wrong with the attributes of a checksummed part, or None (also for a part without checksums)."""
    if not has_checksums(handle):
        if "ids" in handle and handle["ids"].fletcher32:  # written with checksums: the attribute itself is lost
            return "the checksum of its metadata is missing, although its data have checksums"
        return None
    if str(_plain(handle.attrs[CHECKSUM_ATTRIBUTE])) != attributes_digest(handle.attrs):
        return "its metadata (HDF5 attributes) do not match the checksum written with them"
    return None


def create_checksummed_dataset(group, name: str, data: np.ndarray, checksums: bool = True):
    """A dataset holding ``data`` whole, with per-chunk Fletcher-32 checksums when ``checksums``.

    A filter needs a chunked dataset; one chunk holds the whole array (these
    are the small arrays a reader loads whole), and an empty array gets a
    one-row chunk and an unlimited first axis, which HDF5 requires then.
    """
    data = np.asarray(data)
    if not checksums:
        return group.create_dataset(name, data=data)
    rows = max(1, len(data))
    return group.create_dataset(name, data=data, chunks=(rows,) + data.shape[1:],
                                maxshape=(None,) + data.shape[1:], fletcher32=True)


def encode_ids(ids) -> np.ndarray:
    """Utterance IDs as fixed-length UTF-8 bytes: a filter (the checksum) covers fixed-length
    strings, not variable-length ones, whose characters HDF5 keeps outside the dataset's chunks.

    Example
    -------
    >>> encode_ids(["u1", "ü2"])
    array([b'u1', b'\\xc3\\xbc2'], dtype='|S3')
    >>> decode_ids(encode_ids(["u1", "ü2"]))
    ['u1', 'ü2']
    """
    encoded = [str(utt).encode("utf-8") for utt in ids]
    return np.array(encoded, dtype=f"S{max([len(item) for item in encoded] + [1])}")


def decode_ids(stored: np.ndarray) -> list:
    """The IDs of :func:`encode_ids` (or of variable-length strings, as h5py returns them)."""
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in stored.tolist()]
