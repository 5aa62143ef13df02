"""File checksums: model folders, teacher stores and preparation records use one."""

from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in blocks.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", delete=False) as handle:
    ...     _ = handle.write("abc")
    >>> file_sha256(handle.name)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
