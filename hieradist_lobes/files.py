"""Small file utilities shared by model folders, teacher stores and data
preparation: one checksum, one way to write a folder and a JSON file atomically,
one lock that a process holds on a folder. A write that fails (a full disk)
leaves nothing half-written and ends with one :class:`WriteError` naming the
file and the cause."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Iterator

from hieradist_lobes.errors import ReportedError


class WriteError(ReportedError, OSError):
    """A file or folder could not be written (a full disk, a read-only or failing one)."""


def write_failure(path: str, error: BaseException, kept: str = "") -> WriteError:
    """The :class:`WriteError` for ``error`` while writing ``path``; ``kept``: what the user still has.

    Example
    -------
    >>> print(write_failure("/out/model", OSError(errno.ENOSPC, "No space left on device")))
    writing /out/model failed: the disk is full (No space left on device). Nothing half-written was left: free some space and run the same command again
    """
    text = str(error)
    full = getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text or (
        isinstance(error, RuntimeError) and is_failed_write(error))  # torch.save gives no errno
    cause = (f"the disk is full ({getattr(error, 'strerror', None) or 'no space left'})" if full
             else f"{type(error).__name__}: {(text.splitlines() or [''])[0]}")
    return WriteError(f"writing {path} failed: {cause}. Nothing half-written was left{kept}: "
                      f"{'free some space' if full else 'fix the cause'} and run the same command again")


# What fails when a write does: the OS's errors, and torch.save's RuntimeError ("file write failed").
WRITE_ERRORS = (OSError, RuntimeError)


def is_failed_write(error: BaseException) -> bool:
    """Whether ``error`` (one of :data:`WRITE_ERRORS`) says a write failed, not something else.

    Example
    -------
    >>> is_failed_write(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"))
    True
    >>> is_failed_write(RuntimeError("size mismatch")), is_failed_write(OSError(28, "No space left on device"))
    (False, True)
    """
    # torch.save's zip writer (inline_container.cc) on a full disk says "file write failed" or, as often,
    # "unexpected pos 832 vs 726".
    return isinstance(error, OSError) or any(word in str(error) for word in (
        "write failed", "failed writing", "PytorchStreamWriter", "inline_container"))


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


@contextlib.contextmanager
def staged_folder(folder: str) -> Iterator[str]:
    """Write a folder under a temporary name and put it in place (replacing
    ``folder``) only when complete, so that a crash never leaves half a model.

    Example
    -------
    >>> import tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "model")
    >>> with staged_folder(target) as staging:
    ...     _ = open(os.path.join(staging, "a.txt"), "w").write("x")
    >>> os.listdir(target)
    ['a.txt']
    """
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    os.chmod(staging, 0o755)
    try:
        yield staging
    except WriteError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except WRITE_ERRORS as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not is_failed_write(error):
            raise  # not a failed write: a bug, with its traceback
        raise write_failure(folder, error, (" (the folder there before is untouched)" if os.path.isdir(folder)
                                            else "")) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(staging, folder)


def write_json(path: str, data: Any, **dump_options: Any) -> None:
    """Write ``data`` as JSON (``json.dump`` options) atomically (:func:`write_text`).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "new", "a.json")
    >>> write_json(path, {"x": 1})
    >>> open(path).read(), os.listdir(os.path.dirname(path))
    ('{"x": 1}', ['a.json'])
    """
    write_text(path, json.dumps(data, **dump_options))


def write_text(path: str, text: str) -> None:
    """Write ``text`` under a temporary name beside ``path``, then rename it,
    so that a reader or a crash never sees half a file; the folder is made if needed.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> write_text(path, "one two")
    >>> open(path).read().split()
    ['one', 'two']
    """
    with staged_file(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)


@contextlib.contextmanager
def staged_file(path: str) -> Iterator[str]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` when
    the block ends, removed if it fails (a failed write becomes a
    :class:`WriteError` naming ``path``; an earlier ``path`` stays as it was).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with staged_file(path) as temporary:
    ...     _ = open(temporary, "w").write("done")
    >>> open(path).read()
    'done'
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    base, extension = os.path.splitext(path)
    temporary = f"{base}.tmp-{os.getpid()}{extension}"  # the extension kept: writers pick the format by it
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_failure(path, error, " (an earlier file there is as it was)"
                                if os.path.exists(path) else "") from error
        raise


class LockHeld(Exception):
    """Another process holds the lock; ``owner`` says which (pid, host, since when)."""

    def __init__(self, path: str, owner: str) -> None:
        super().__init__(f"{path} is held by {owner}")
        self.path, self.owner = path, owner


class ProcessLock:
    """An exclusive lock on ``path`` (``fcntl.flock``), held until
    :meth:`release` or until the process ends, however it ends, so that a
    killed run never leaves a stale lock. The file records the holder.

    Raises
    ------
    LockHeld
        If another process (or another open of it in this one) holds it.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "run.lock")
    >>> first = ProcessLock(path)
    >>> try:
    ...     ProcessLock(path)
    ... except LockHeld as held:
    ...     print(held.owner.startswith(f"pid {os.getpid()} "))
    True
    >>> first.release(); ProcessLock(path).release()
    """

    def __init__(self, path: str) -> None:
        import fcntl

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._handle = open(path, "a+")
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.seek(0)
            owner = self._handle.read().strip() or "another process"
            self._handle.close()
            raise LockHeld(path, owner) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self._handle.flush()

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing releases the lock
