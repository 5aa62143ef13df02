"""An HDF5 store of teacher outputs, keyed by utterance ID.

A store is a folder of HDF5 *parts*, ``<store>/<split>/part-r<rank>-<n>.h5``.
Each process (rank) of ``save_teachers.py`` writes its own parts; a part is
written under a temporary name and renamed when complete, so a killed run
leaves only whole parts and a re-run continues with the utterances that are
missing.  :class:`TeacherStore` reads all parts as one.

A store is of one of two *kinds* (metadata ``kind``; parts written before the
attribute existed read as ``asr``): CTC/attention teachers' posteriors
(:class:`TeacherRecord`) or a pre-trained LM's token features
(:class:`PLMRecord`).  What a record holds and how it is written, read and
summarised is its kind's codec's (:mod:`hieradist_lobes.store_codecs`); this
module knows parts, the index, the metadata and the writer, for both.

Inside a part (layout 2), each field of the records (:mod:`store_codecs`:
``ctc``, ``att``, ``tokens``, ...) is one dataset, ``/fields/<name>``, holding
the utterances' arrays one after another along the first axis;
``/offsets/<name>`` gives where each utterance's rows end, and ``/ids`` the
utterance IDs in the order written.  Reading an utterance is then one slice
per field: few HDF5 objects per part, and a reader keeps the small fields
(tokens, error rates, durations) of a part in memory.  Parts of layout 1 (a
group ``/utts/<ID>`` per utterance, written before December 2026) are still
read; ``python -m hieradist_lobes.teacher_store copy OLD NEW`` rewrites a
store in the current layout.

Every part carries the store's metadata as attributes: kind, label vocabulary,
teacher names, sources and checkpoint hashes, CTC frame rate (0 for plm),
feature dimension (0 for asr), dtype, top-k and the options it was created
with; the reader refuses parts that disagree.  Every dataset has HDF5's
per-chunk checksums and the metadata a checksum of its own
(:mod:`hieradist_lobes.store_checksums`), so a byte changed in place fails
the read that meets it, naming the part and utterance.

Usage::

    python -m hieradist_lobes.teacher_store info results/teachers/store     # verifies, then summarises
    python -m hieradist_lobes.teacher_store verify results/teachers/store   # exit 1 naming each damaged part
    python -m hieradist_lobes.teacher_store copy old_store new_store   # to the current layout

Example
-------
>>> import tempfile, numpy as np
>>> folder = tempfile.mkdtemp()
>>> meta = StoreMetadata(labels=["<blank>", "a", "b", "<eos>"], teachers=[{"name": "t0"}], frame_rate=50.0)
>>> with TeacherStoreWriter(folder, "train", meta) as writer:
...     writer.add("utt1", TeacherRecord(
...         ctc_logprobs=[np.log(np.full((5, 4), 0.25))], att_logprobs=[np.log(np.full((3, 4), 0.25))],
...         ctc_error_rate=[10.0], att_error_rate=[5.0], tokens=[1, 2], duration=0.1))
>>> store = TeacherStore(folder)
>>> record = store.get("utt1")
>>> record.ctc_logprobs[0].shape, round(float(np.exp(record.att_logprobs[0][0, 0])), 2)
((5, 4), 0.25)

A plm store:

>>> folder = tempfile.mkdtemp()
>>> meta = StoreMetadata(labels=["<blank>", "<bos>", "<eos>", "the", "cat"], teachers=[{"name": "bert"}],
...                      frame_rate=0.0, kind="plm", feature_dim=8)
>>> with TeacherStoreWriter(folder, "train", meta) as writer:
...     writer.add("utt1", PLMRecord(features=np.ones((3, 8)), tokens=[3, 4], duration=0.8))
>>> record = TeacherStore(folder).get("utt1")
>>> record.features.shape, record.tokens
((3, 8), [3, 4])
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import glob
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from hieradist_lobes.cli import path_argument
from hieradist_lobes.files import WRITE_ERRORS, LockHeld, ProcessLock, WriteError, write_failure
from hieradist_lobes.store_checksums import (
    attributes_problem,
    create_checksummed_dataset,
    decode_ids,
    encode_ids,
    has_checksums,
    seal_attributes,
)
from hieradist_lobes.store_codecs import (  # noqa: F401  (records and errors are part of the store's API)
    CODECS,
    PLMRecord,
    TeacherRecord,
    TeacherStoreError,
    expand_top_k,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # of the metadata; equal in all parts of a store
# Part layouts: 1, a group per utterance; 2 (written now), a dataset per field (module docstring).
LAYOUT = 2
# The HDF5 file format parts are written in: 1.10's checksums every metadata block (read by HDF5 1.10+).
HDF5_FORMAT = ("v110", "v110")
# About this many bytes per HDF5 chunk of a matrix field: a random read of one utterance touches few
# chunks, and a part's last chunk, allocated whole, wastes little.
CHUNK_BYTES = 32 * 1024
_PART_PATTERN = re.compile(r"part-r(\d+)-(\d+)\.h5$")
KINDS = tuple(CODECS)
DTYPES = ("float16", "float32")
# HDF5 filters for the matrices (h5py ships both): gzip smaller, lzf faster; None: stored as is.
COMPRESSIONS = ("gzip", "lzf")


# The writer stops (with a message) when less than this much more than twice a record is free on its disk.
FREE_SPACE_RESERVE = 64 * 2**20
# Frame rates (CTC frames per second) this close, relatively, are one measurement of the same teachers.
FRAME_RATE_TOLERANCE = 0.1


@dataclass
class StoreMetadata:
    """What a store says about itself; equal in every part.

    Arguments
    ---------
    labels : list of str
        The label vocabulary, index order (what the student must use).
    teachers : list of dict
        One dict per teacher: ``name``, ``source`` (model folder),
        ``checkpoint_sha256``.
    frame_rate : float
        CTC frames per second of audio.
    dtype : str
        ``float16`` or ``float32``.
    top_k : int
        0 for full posteriors, else the number of classes kept per row.
    options : dict
        Creation options (temperature, decoding, ...), for the record.
    kind : str
        ``asr`` (CTC/attention posteriors, :class:`TeacherRecord`) or ``plm``
        (language-model features, :class:`PLMRecord`).
    feature_dim : int
        Feature size of a ``plm`` store (0 for ``asr``).

    Example
    -------
    >>> meta = StoreMetadata(labels=["<blank>", "a"], teachers=[{"name": "t"}], frame_rate=0.0,
    ...                      kind="plm", feature_dim=384)
    >>> StoreMetadata.from_attrs(meta.to_attrs()) == meta
    True
    """

    labels: List[str]
    teachers: List[Dict[str, str]]
    frame_rate: float
    dtype: str = "float16"
    top_k: int = 0
    options: Dict[str, object] = field(default_factory=dict)
    kind: str = "asr"
    feature_dim: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"store kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        self.codec.check_metadata(self)

    @property
    def codec(self):
        """How this kind's records are written, read and summarised (:mod:`~hieradist_lobes.store_codecs`)."""
        return CODECS[self.kind]

    def to_attrs(self) -> Dict[str, object]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "feature_dim": int(self.feature_dim),
            "labels": json.dumps(self.labels, ensure_ascii=False),
            "teachers": json.dumps(self.teachers, ensure_ascii=False),
            "frame_rate": float(self.frame_rate),
            "dtype": self.dtype,
            "top_k": int(self.top_k),
            "options": json.dumps(self.options, ensure_ascii=False, sort_keys=True),
        }

    @classmethod
    def from_attrs(cls, attrs) -> "StoreMetadata":
        version = int(attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise TeacherStoreError(f"teacher store format {version}, this code reads {FORMAT_VERSION}")
        return cls(
            labels=json.loads(attrs["labels"]),
            teachers=json.loads(attrs["teachers"]),
            frame_rate=float(attrs["frame_rate"]),
            dtype=str(attrs["dtype"]),
            top_k=int(attrs["top_k"]),
            options=json.loads(attrs["options"]),
            # Parts written before plm stores existed have neither attribute.
            kind=str(attrs.get("kind", "asr")),
            feature_dim=int(attrs.get("feature_dim", 0)),
        )

    @property
    def num_teachers(self) -> int:
        return len(self.teachers)

    def differences(self, other: "StoreMetadata") -> List[str]:
        """The attributes in which ``other`` makes another store than this.

        The frame rate is a measurement (stores written before 2026-12-03
        measured it on whichever utterance came first), so rates within
        :data:`FRAME_RATE_TOLERANCE` of each other agree; the splits listed
        in ``options`` say what one run stored, not what the store is (each
        part records its own split), so they may differ.

        Example
        -------
        >>> a = StoreMetadata(labels=["<blank>", "a"], teachers=[{"name": "t"}], frame_rate=25.0,
        ...                   options={"splits": ["train"]})
        >>> b = StoreMetadata(labels=["<blank>", "a"], teachers=[{"name": "t"}], frame_rate=25.8,
        ...                   options={"splits": ["train", "valid"]})
        >>> a.differences(b), a.differences(StoreMetadata(labels=["<blank>", "b"], teachers=[{"name": "t"}],
        ...                                               frame_rate=12.5))
        ([], ['labels', 'frame_rate'])
        """
        mine, theirs = self.comparable_attrs(), other.comparable_attrs()

        def agree(key: str) -> bool:
            if key == "frame_rate":
                return abs(mine[key] - theirs[key]) <= FRAME_RATE_TOLERANCE * max(mine[key], theirs[key])
            return mine[key] == theirs.get(key)

        return [key for key in mine if not agree(key)]

    def comparable_attrs(self) -> Dict[str, object]:
        """:meth:`to_attrs` without what may differ between the parts of one store (see :meth:`differences`)."""
        attrs = self.to_attrs()
        attrs["options"] = json.dumps({key: value for key, value in self.options.items() if key != "splits"},
                                      ensure_ascii=False, sort_keys=True)
        return attrs


def plan_batches(items: Sequence[Tuple[str, float]], batch_size: int, rank: int = 0, world_size: int = 1
                 ) -> List[List[str]]:
    """This process's batches of utterance IDs, the same whatever is already stored.

    ``items`` are ``(ID, length)`` pairs of the whole split.  They are sorted
    longest first (ties by ID) and cut into batches of ``batch_size``; batch
    ``i`` belongs to rank ``i % world_size``.  Teacher outputs depend a little
    on which utterances share a padded batch (frame counts rounded from
    relative lengths, recurrent layers reading padding), so a resumed,
    re-run or multi-process extraction must form exactly the batches of an
    uninterrupted one-process run: the batches are fixed here, and the
    writer closes parts only between batches.

    Example
    -------
    >>> plan_batches([("a", 1.0), ("b", 3.0), ("c", 2.0), ("d", 2.0), ("e", 0.5)], 2)
    [['b', 'c'], ['d', 'a'], ['e']]
    >>> plan_batches([("a", 1.0), ("b", 3.0), ("c", 2.0), ("d", 2.0), ("e", 0.5)], 2, rank=1, world_size=2)
    [['d', 'a']]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ordered = [utt for utt, _ in sorted(items, key=lambda item: (-float(item[1]), item[0]))]
    batches = [ordered[start:start + batch_size] for start in range(0, len(ordered), batch_size)]
    return [batch for index, batch in enumerate(batches) if index % world_size == rank]


Record = Union["TeacherRecord", "PLMRecord"]


def fill_store(writer: "TeacherStoreWriter", lengths: Mapping[str, float], batch_size: int, world_size: int,
               records_of: Callable[[List[List[str]]], Iterable[Mapping[str, Record]]], description: str,
               progress: bool = True) -> int:
    """The one resumable, rank-sharded loop that fills a store.

    The batches are planned over the whole split (:func:`plan_batches`, by
    ``lengths``: seconds of audio or tokens); this writer's rank takes its
    share; batches whose utterances are all stored are skipped;
    ``records_of(batches)`` computes the others, yielding per batch a mapping
    ID -> record (a batch that an earlier part boundary cut is recomputed
    whole, and only its missing utterances are added).  The writer is closed
    on every path (its lock released).

    Returns
    -------
    int
        The number of utterances added (0 when all were stored).
    """
    from tqdm import tqdm

    with writer:
        done = writer.done_ids()
        batches = plan_batches(list(lengths.items()), batch_size, writer.rank, world_size)
        todo = [batch for batch in batches if not all(utt in done for utt in batch)]
        if not todo:
            logger.info("%s: all %d utterances already stored in %s", description, len(lengths), writer.folder)
            return 0
        added = 0
        total = sum(1 for batch in todo for utt in batch if utt not in done)
        with tqdm(total=total, desc=description, unit="utt", disable=not progress) as bar:
            for batch, records in zip(todo, records_of(todo)):
                missing = [utt for utt in batch if utt not in done]
                for utt in missing:
                    writer.add(utt, records[utt], end_of_batch=utt == missing[-1])
                added += len(missing)
                bar.update(len(missing))
        return added


class _WriterLock:
    """An exclusive lock on one rank of one split of a store (:class:`ProcessLock`):
    a second writer of the same rank is stopped with a message instead of
    deleting the first's part in progress."""

    def __init__(self, folder: str, rank: int) -> None:
        # Beside the split folders, so that those hold only parts.
        self.path = os.path.join(os.path.dirname(folder), ".locks", f"{os.path.basename(folder)}-r{rank}.lock")
        try:
            self._lock = ProcessLock(self.path)
        except LockHeld as held:
            raise TeacherStoreError(
                f"another process ({held.owner}) is writing rank {rank} of {folder}; wait for it to finish, or stop "
                "it and run again (a stopped run resumes where it was)") from None

    def release(self) -> None:
        self._lock.release()


class TeacherStoreWriter:
    """Append utterances to a store, one part file at a time.

    Arguments
    ---------
    path : str
        The store folder.
    split : str
        The data split (``train``, ``valid``, ...).
    metadata : StoreMetadata
        Must equal the metadata of parts already in the store.
    rank : int
        This process's rank; each rank writes its own parts.
    part_size : int
        Utterances per part: about this many are redone after a crash.  A
        part is closed only at the end of a batch (``add(...,
        end_of_batch=True)``), so that parts hold whole batches.
    compression : str, optional
        ``gzip`` or ``lzf`` for the matrices' HDF5 datasets (default: none).
    checksums : bool
        Per-chunk checksums on every dataset and a checksum of the metadata
        (:mod:`~hieradist_lobes.store_checksums`), verified on every read.
        False only to measure what they cost: such a store cannot be verified.

    Only one process may write a rank of a split at a time: a second one
    stops with :class:`TeacherStoreError` (see :class:`_WriterLock`).
    Records with NaN or inf are refused.
    """

    def __init__(self, path: str, split: str, metadata: StoreMetadata, rank: int = 0, part_size: int = 256,
                 compression: Optional[str] = None, checksums: bool = True) -> None:
        import h5py  # noqa: F401  (fail early if missing)

        if metadata.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {metadata.dtype!r}")
        if compression is not None and compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)} or None, got {compression!r}")
        self.folder = os.path.join(path, split)
        os.makedirs(self.folder, exist_ok=True)
        self.split = split
        self.metadata = metadata
        self.rank = rank
        self.part_size = part_size
        self.compression = compression
        self.checksums = checksums
        self._handle = None
        self._ids: List[str] = []
        self._ends: Dict[str, List[int]] = {}
        self._small: Dict[str, List[np.ndarray]] = {}
        self._temporary = ""
        self._lock = _WriterLock(self.folder, rank)
        # Leftovers of a killed run of this rank are incomplete (and ours: we hold the lock): discard them.
        for leftover in glob.glob(os.path.join(self.folder, f"part-r{rank}-*.h5.tmp")):
            os.remove(leftover)
        existing = [_PART_PATTERN.search(os.path.basename(p)) for p in glob.glob(os.path.join(self.folder, "*.h5"))]
        numbers = [int(m.group(2)) for m in existing if m and int(m.group(1)) == rank]
        self._next_part = max(numbers, default=-1) + 1
        try:
            self._check_existing_metadata(path)
        except BaseException:
            self._lock.release()
            raise

    def _check_existing_metadata(self, path: str) -> None:
        if not _part_files(path):
            return
        existing = TeacherStore(path).metadata
        different = existing.differences(self.metadata)
        if different == ["frame_rate"]:
            raise TeacherStoreError(
                f"teacher store {path} was made by teachers whose CTC gives {existing.frame_rate:g} frames per "
                f"second; these give {self.metadata.frame_rate:g} (other teachers, or other feature or "
                "subsampling settings): delete the store or choose another store path")
        if different:
            raise TeacherStoreError(
                f"teacher store {path} was made with other {', '.join(different)}; "
                "delete it or choose another store path"
            )
        # The same teachers: the store's own measurement, so that every part says the same.
        self.metadata.frame_rate = existing.frame_rate

    def done_ids(self) -> set:
        """IDs of this split already stored by any rank (complete parts only)."""
        path = os.path.dirname(self.folder)
        if not _part_files(path, [self.split]):
            return set()
        return set(TeacherStore(path, splits=[self.split]).ids())

    def _open_part(self) -> None:
        import h5py

        name = f"part-r{self.rank}-{self._next_part:05d}.h5"
        self._next_part += 1
        self._final = os.path.join(self.folder, name)
        self._temporary = self._final + ".tmp"
        # The HDF5 1.10 file format checksums its own metadata (object headers, chunk indexes) too.
        self._handle = h5py.File(self._temporary, "w", **({"libver": HDF5_FORMAT} if self.checksums else {}))
        for key, value in self.metadata.to_attrs().items():
            self._handle.attrs[key] = value
        self._handle.attrs["split"] = self.split
        self._handle.attrs["layout"] = LAYOUT
        self._handle.create_group("fields")
        self._ids, self._ends, self._small = [], {}, {}
        # Held open for the part's life: HDF5 writes cached chunks when a dataset is closed, and a failure
        # there (a full disk) only reaches Python as "Exception ignored" if the close is a deallocation.
        self._datasets = {}

    def _append(self, name: str, array: np.ndarray) -> None:
        ends = self._ends.setdefault(name, [0])
        start = ends[-1]
        ends.append(start + len(array))
        if name in self.metadata.codec.index_fields:  # small: kept until the part is closed, then written whole
            self._small.setdefault(name, []).append(array)
            return
        if name not in self._datasets:
            row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
            rows = max(16, CHUNK_BYTES // max(row_bytes, 1))
            self._datasets[name] = self._handle["fields"].create_dataset(
                name, shape=(0,) + array.shape[1:], maxshape=(None,) + array.shape[1:], dtype=array.dtype,
                chunks=(rows,) + array.shape[1:], fletcher32=self.checksums,
                **({"compression": self.compression} if self.compression else {}))
        if len(array):
            dataset = self._datasets[name]
            dataset.resize(start + len(array), axis=0)
            dataset[start:] = array

    def _close_part(self) -> None:
        if self._handle is None:
            return
        # The small fields and the index are written at the close, before the part gets its final name.
        for name, arrays in self._small.items():
            create_checksummed_dataset(self._handle["fields"], name, np.concatenate(arrays), self.checksums)
        create_checksummed_dataset(self._handle, "ids", encode_ids(self._ids), self.checksums)
        offsets = self._handle.create_group("offsets")
        for name, ends in self._ends.items():
            create_checksummed_dataset(offsets, name, np.asarray(ends, dtype=np.int64), self.checksums)
        if self.checksums:
            seal_attributes(self._handle)
        for dataset in self._datasets.values():
            dataset.id.close()  # raises here, into the caller, if its cached chunks cannot be written
        self._datasets = {}
        self._handle.close()
        self._handle = None
        os.replace(self._temporary, self._final)
        self._temporary = ""

    def add(self, utt_id: str, record: Union[TeacherRecord, PLMRecord], end_of_batch: bool = True) -> None:
        """Store one utterance's teacher outputs (a :class:`PLMRecord` in a plm store).

        ``end_of_batch``: whether the part may be closed after this record
        (pass False inside a batch, so that parts hold whole batches).
        """
        codec = self.metadata.codec
        if not isinstance(record, codec.record_type):
            raise TeacherStoreError(f"utterance {utt_id}: a {type(record).__name__} cannot go into a "
                                    f"{self.metadata.kind} store (expected {codec.record_type.__name__})")
        record = codec.prepare(record, self.metadata, utt_id)  # checked before anything is written
        self._add_fields(utt_id, codec.encode(record, self.metadata), end_of_batch)

    def _add_fields(self, utt_id: str, fields: Mapping[str, np.ndarray], end_of_batch: bool) -> None:
        if self._handle is None:
            try:
                self._open_part()
            except WRITE_ERRORS as error:
                raise self._write_failed(error) from None
        if utt_id in self._ids:
            raise TeacherStoreError(f"utterance {utt_id} was already added to this part")
        self._check_free_space(sum(np.asarray(array).nbytes for array in fields.values()))
        if self._ids and set(fields) != set(self._ends):
            raise TeacherStoreError(f"utterance {utt_id} has the fields {sorted(fields)}, the part's other "
                                    f"utterances {sorted(self._ends)}")
        try:
            for name, array in fields.items():
                self._append(name, np.asarray(array))
            self._ids.append(utt_id)
            if end_of_batch and len(self._ids) >= self.part_size:
                self._close_part()
            elif end_of_batch:
                self._handle.flush()  # a failing disk stops the run at this batch, not at the part's end
        except WRITE_ERRORS as error:  # h5py reports a failed write (a full disk) as either
            raise self._write_failed(error) from None

    def _check_free_space(self, record_bytes: int) -> None:
        # HDF5 does not survive a full disk: the write fails inside its caches, out of Python's sight, and
        # closing the file then crashes the interpreter (a segmentation fault). So the writer stops while
        # there is still room for this record twice over and FREE_SPACE_RESERVE more.
        free = shutil.disk_usage(self.folder).free
        needed = 2 * record_bytes + FREE_SPACE_RESERVE
        if free < needed:
            raise self._write_failed(OSError(errno.ENOSPC, f"{free / 2**20:.1f} MiB free on the store's disk, "
                                                           f"the writer stops below {needed / 2**20:.1f} MiB"))

    def _write_failed(self, error: BaseException) -> WriteError:
        """Drop the part being written (its file too) after ``error``; the error that says so."""
        # The error's text first: h5py's error object may not outlive the file it is about.
        failure = write_failure(self._temporary or self.folder, error,
                                " (the finished parts are kept, and the run computes only what is missing)")
        self._abandon_part()
        return failure

    def _abandon_part(self, remove: bool = True) -> None:
        handle, self._handle = self._handle, None
        datasets, self._datasets = getattr(self, "_datasets", {}), {}
        for dataset in datasets.values():
            with contextlib.suppress(Exception):
                dataset.id.close()
        if handle is not None:
            # A file whose write failed may fail to close too; closing it here (not at exit) is what keeps
            # h5py from crashing the interpreter later, whatever it reports now.
            with contextlib.suppress(Exception):
                handle.close()
        if self._temporary and remove:
            with contextlib.suppress(OSError):
                os.remove(self._temporary)

    def close(self) -> None:
        """Finish the current part (call it, or use the writer as a context manager)."""
        try:
            self._close_part()
        except WRITE_ERRORS as error:
            raise self._write_failed(error) from None
        finally:
            self._lock.release()

    def __enter__(self) -> "TeacherStoreWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            # Keep what is complete; the interrupted part stays a .tmp, which a resume drops, as after a kill.
            self._abandon_part(remove=False)
            self._lock.release()


class DamagedPartError(TeacherStoreError):
    """A part file whose contents are not what was written; ``reason`` says what was found."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# What to do about a damaged part, in every message that names one.
REPAIR = ("Delete this part file and run the script that wrote the store again (save_teachers.py, or "
          "save_plm_features.py for PLM features): it recomputes only the utterances that are missing")


def _damaged(part: str, error: object, utt_id: Optional[str] = None) -> DamagedPartError:
    what = f"utterance {utt_id} of " if utt_id else ""
    reason = _reason(error)
    return DamagedPartError(f"{what}teacher store part {part} is damaged ({reason}): it was truncated, "
                            f"overwritten or corrupted. {REPAIR}",
                            f"utterance {utt_id}: {reason}" if utt_id else reason)


def _reason(error: object) -> str:
    """What was found: a :class:`DamagedPartError`'s reason, or the failure's own words."""
    reason = getattr(error, "reason", None)
    if reason:
        return reason
    text = str(error).strip("'\"")
    # HDF5's words when a chunk's Fletcher-32 checksum fails (the only filter that fails on reading a
    # whole chunk) and when a metadata block's checksum fails.
    if "filter returned failure during read" in text:
        return f"stored bytes do not match their checksum; HDF5: {text}"
    if "incorrect metadata checksum" in text:
        return f"its HDF5 metadata do not match their checksum; HDF5: {text}"
    return text


class _PartReader:
    """One part file open for reading in this process: each utterance's fields by ID.

    Layout 2 keeps the part's offsets and small fields (``index_fields``) in
    memory and reads an utterance's matrices as one slice per field; layout
    1 reads the utterance's group (datasets and attributes).
    """

    def __init__(self, path: str, index_fields: Sequence[str]) -> None:
        import h5py

        self.path = path
        try:
            self.handle = h5py.File(path, "r")
        except Exception as error:
            raise _damaged(path, error) from error
        try:
            self.layout = _layout(self.handle, path)
            if self.layout == 1:
                return
            self.row = {utt: number for number, utt in enumerate(self.ids())}
            fields = self.handle["fields"]
            # h5py lists an object whose header is unreadable as None: every name is opened on its own.
            self.ends = {name: _read_whole(self.handle["offsets"][name], path).tolist()
                         for name in self.handle["offsets"]}
            self.small = {name: _read_whole(fields[name], path) for name in index_fields if name in fields}
            # Every field: the small ones from memory, the matrices as open datasets.
            self.stored = {name: self.small[name] if name in self.small else fields[name] for name in fields}
            self._check_offsets()
        except Exception as error:  # a part whose index is damaged; the handle is closed, not leaked
            self.handle.close()
            if isinstance(error, TeacherStoreError):
                raise
            raise _damaged(path, error) from error

    def _check_offsets(self) -> None:
        """Every field's offsets must cut its dataset into one slice per utterance (checksums or not)."""
        if set(self.ends) != set(self.stored):
            raise _damaged(self.path, f"offsets for {sorted(self.ends)}, fields {sorted(self.stored)}")
        for name, ends in self.ends.items():
            steps = np.diff(ends)
            if len(ends) != len(self.row) + 1 or ends[0] != 0 or (steps < 0).any() \
                    or ends[-1] != len(self.stored[name]):
                raise _damaged(self.path, f"the offsets of {name} do not cut its {len(self.stored[name])} rows "
                                          f"into {len(self.row)} utterances")

    def fields(self, utt_id: str, small_only: bool = False) -> Dict[str, np.ndarray]:
        """The stored arrays of one utterance (only the small ones with ``small_only``), or
        :class:`DamagedPartError` naming it when they cannot be read (a checksum failed)."""
        try:
            return self._fields(utt_id, small_only)
        except Exception as error:
            raise _damaged(self.path, error, utt_id) from error

    def _fields(self, utt_id: str, small_only: bool) -> Dict[str, np.ndarray]:
        if self.layout == 1:
            group = self.handle["utts"][utt_id]
            found = {name: np.atleast_1d(value) for name, value in group.attrs.items()}
            if not small_only:
                found.update((name, dataset[()]) for name, dataset in group.items())
            return found
        row = self.row[utt_id]
        found = {}
        for name, data in (self.small if small_only else self.stored).items():
            ends = self.ends[name]
            found[name] = data[ends[row]:ends[row + 1]]
        return found

    def ids(self) -> List[str]:
        """The part's utterance IDs, in the order written."""
        return _part_ids(self.handle, self.layout)

    def close(self) -> None:
        self.handle.close()


def _read_record(reader: _PartReader, utt_id: str, metadata: StoreMetadata
                 ) -> Tuple[Dict[str, np.ndarray], Union[TeacherRecord, PLMRecord]]:
    """One utterance's stored fields and its record, or :class:`DamagedPartError`: a read that
    fails (a checksum, HDF5's structure), fields that do not decode, values that are NaN or inf."""
    try:
        fields = reader.fields(utt_id)
        record = metadata.codec.decode(fields, metadata)
    except TeacherStoreError:
        raise
    except Exception as error:  # a damaged dataset inside a readable part
        raise _damaged(reader.path, error, utt_id) from error
    if not all(np.isfinite(array).all() for array in metadata.codec.arrays(record)):
        raise _damaged(reader.path, "values are NaN or inf", utt_id)
    return fields, record


def _layout(handle, path: str) -> int:
    layout = int(handle.attrs.get("layout", 1))
    if layout not in (1, LAYOUT):
        raise TeacherStoreError(f"part {path} has layout {layout}, this code reads 1 and {LAYOUT}: "
                                "it was written by a newer version of hieradist_lobes")
    return layout


def _read_whole(dataset, path: str) -> np.ndarray:
    """A small dataset of part ``path`` read whole, refused if its shape claims more bytes than the file
    holds (a changed shape in a part without checksummed metadata would otherwise allocate it)."""
    if dataset.size * dataset.dtype.itemsize > os.path.getsize(path):
        raise _damaged(path, f"dataset {dataset.name} claims {dataset.shape} values, more than the file holds")
    return dataset[()]


def _part_header(handle, path: str) -> Tuple[StoreMetadata, str]:
    """A part's metadata and split, once its attributes match their checksum (:class:`DamagedPartError`)."""
    problem = attributes_problem(handle)
    if problem:
        raise _damaged(path, problem)
    return StoreMetadata.from_attrs(handle.attrs), str(handle.attrs["split"])


def _part_ids(handle, layout: int) -> List[str]:
    if layout == 1:
        return list(handle["utts"].keys())
    return decode_ids(_read_whole(handle["ids"], handle.filename))


def _part_files(path: str, splits: Optional[Sequence[str]] = None) -> List[str]:
    files = sorted(glob.glob(os.path.join(path, "*", "part-r*-*.h5")))
    if splits is not None:
        files = [f for f in files if os.path.basename(os.path.dirname(f)) in splits]
    return files


def _no_parts(path: str, splits: Optional[Sequence[str]] = None) -> TeacherStoreError:
    """Why ``path`` holds no store: it is missing, a file, or a folder without finished parts."""
    if not os.path.exists(path):
        return TeacherStoreError(f"teacher store {path} does not exist: give the folder save_teachers.py "
                                 "(or save_plm_features.py) wrote")
    if not os.path.isdir(path):
        return TeacherStoreError(f"teacher store {path} is a file; a store is the folder holding "
                                 "<split>/part-r*-*.h5 files")
    unfinished = glob.glob(os.path.join(path, "*", "part-r*-*.h5.tmp"))
    return TeacherStoreError(
        f"teacher store {path} has no complete part files" + (f" for split(s) {', '.join(splits)}" if splits else "")
        + (f" ({len(unfinished)} unfinished, from a run that did not end: run it again to finish them)"
           if unfinished else ""))


class TeacherStore:
    """Read a teacher store (all its parts) by utterance ID.

    HDF5 files are opened lazily in each process, so one instance can be
    handed to DataLoader workers: each worker opens its own handles.

    Arguments
    ---------
    path : str
        The store folder.
    splits : sequence of str, optional
        Read only these splits.
    """

    def __init__(self, path: str, splits: Optional[Sequence[str]] = None) -> None:
        import h5py

        self.path = path
        files = _part_files(path, splits)
        if not files:
            raise _no_parts(path, splits)
        self._index: Dict[str, int] = {}
        self._files = files
        self._split_of_file: List[str] = []
        self.metadata: Optional[StoreMetadata] = None
        unchecked = 0
        for number, part in enumerate(files):
            try:
                with h5py.File(part, "r") as handle:
                    metadata, split = _part_header(handle, part)
                    utt_ids = _part_ids(handle, _layout(handle, part))
                    unchecked += not has_checksums(handle)
            except TeacherStoreError:
                raise
            except Exception as error:  # h5py raises OSError, KeyError, ... for a damaged file
                raise _damaged(part, error) from error
            if self.metadata is None:
                self.metadata = metadata
            elif self.metadata.differences(metadata):
                raise TeacherStoreError(f"part {part} has other {', '.join(self.metadata.differences(metadata))} "
                                        f"than {files[0]}")
            self._split_of_file.append(split)
            for utt_id in utt_ids:
                if utt_id in self._index:
                    raise TeacherStoreError(
                        f"utterance {utt_id} is in both {files[self._index[utt_id]]} and {part}")
                self._index[utt_id] = number
        if unchecked:
            logger.warning("%d of the %d parts of the teacher store %s were written without checksums (by an "
                           "older version): changed bytes in them cannot be detected; `python -m "
                           "hieradist_lobes.teacher_store copy %s NEW` rewrites the store with checksums",
                           unchecked, len(files), path, path)
        self._parts: Dict[int, _PartReader] = {}
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_parts"] = {}
        state["_pid"] = None
        return state

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def ids(self, split: Optional[str] = None) -> List[str]:
        """Stored utterance IDs, optionally of one split."""
        return [u for u, n in self._index.items() if split is None or self._split_of_file[n] == split]

    def splits(self) -> List[str]:
        return sorted(set(self._split_of_file))

    def _part(self, number: int) -> _PartReader:
        if self._pid != os.getpid():  # a new DataLoader worker: open our own handles
            self._parts, self._pid = {}, os.getpid()
        if number not in self._parts:
            self._parts[number] = _PartReader(self._files[number], self.metadata.codec.index_fields)
        return self._parts[number]

    def fields(self, utt_id: str) -> Dict[str, np.ndarray]:
        """The arrays stored for ``utt_id`` as written (store dtype, top-k not expanded)."""
        if utt_id not in self._index:
            raise TeacherStoreError(f"utterance {utt_id} is not in the teacher store {self.path}")
        return self._part(self._index[utt_id]).fields(utt_id)

    @property
    def kind(self) -> str:
        """``asr`` or ``plm``."""
        return self.metadata.kind

    def get(self, utt_id: str) -> Union[TeacherRecord, PLMRecord]:
        """The teachers' outputs for ``utt_id``: dense float32 log-posteriors
        (:class:`TeacherRecord`), or float32 features (:class:`PLMRecord`) in a plm store.

        Raises
        ------
        TeacherStoreError
            If the utterance is not stored, its part file is damaged, or its
            values are not finite (naming the part file and what to do).
        """
        return self._read_checked(utt_id)[1]

    def _read_checked(self, utt_id: str) -> Tuple[Dict[str, np.ndarray], Union[TeacherRecord, PLMRecord]]:
        """The stored fields of ``utt_id`` and the record decoded from them, checked as :meth:`get` says."""
        if utt_id not in self._index:
            raise TeacherStoreError(f"utterance {utt_id} is not in the teacher store {self.path}")
        return _read_record(self._part(self._index[utt_id]), utt_id, self.metadata)

    def summary(self) -> Dict[str, object]:
        """Splits, counts, mean error rates per teacher (asr) or tokens (plm), classes, dtype, size."""
        size = sum(os.path.getsize(f) for f in self._files)
        common = {
            "path": self.path,
            "kind": self.metadata.kind,
            "teachers": [t.get("name", str(i)) for i, t in enumerate(self.metadata.teachers)],
            "classes": len(self.metadata.labels),
            "dtype": self.metadata.dtype,
            "size_bytes": size,
        }
        return {**common, **self.metadata.codec.summary(self, size)}

    def split_totals(self, add, **initial) -> Tuple[Dict[str, Dict[str, object]], float]:
        """Per split (sorted): utterances and hours, plus the ``initial`` entries
        that ``add(entry, fields)`` accumulates from each utterance's small
        fields (``add`` makes new values, it does not modify them); and the total hours."""
        splits: Dict[str, Dict[str, object]] = {}
        for number, part in enumerate(self._files):
            entry = splits.setdefault(self._split_of_file[number], {"utterances": 0, "hours": 0.0, **initial})
            reader = _PartReader(part, self.metadata.codec.index_fields)
            try:
                for utt_id in reader.ids():
                    fields = reader.fields(utt_id, small_only=True)
                    entry["utterances"] += 1
                    entry["hours"] += float(fields["duration"][0]) / 3600
                    add(entry, fields)
            finally:
                reader.close()
        hours = sum(entry["hours"] for entry in splits.values())
        for entry in splits.values():
            entry["hours"] = round(entry["hours"], 3)
        return dict(sorted(splits.items())), hours

    def close(self) -> None:
        for part in self._parts.values():
            part.close()
        self._parts = {}


@dataclass
class PartCheck:
    """What :func:`verify_store` found in one part file."""

    path: str
    split: str = "?"
    utterances: int = 0
    checksums: bool = False
    problem: Optional[str] = None  # None: the part is whole


def _check_part(part: str, values: bool) -> Tuple[PartCheck, Optional[StoreMetadata], List[str]]:
    """One part checked on its own: its check, its metadata and its IDs (None and [] where unreadable)."""
    import h5py

    check = PartCheck(part)
    metadata, ids = None, []
    try:
        with h5py.File(part, "r") as handle:
            check.checksums = has_checksums(handle)
            metadata, check.split = _part_header(handle, part)
        reader = _PartReader(part, metadata.codec.index_fields)
        try:
            ids = reader.ids()
            check.utterances = len(ids)
            for utt in ids if values else ():
                _read_record(reader, utt, metadata)
        finally:
            reader.close()
    except Exception as error:  # every failure is this part's damage, reported with the others
        check.problem, metadata, ids = _reason(error), None, []
    return check, metadata, ids


def verify_store(path: str, values: bool = True, progress: bool = True) -> List[PartCheck]:
    """Check every part of a store on its own, reporting each damaged one instead of stopping at the first.

    A part is damaged when its file does not open as HDF5, its metadata
    does not match its checksum or differs from what most parts share, a
    dataset fails its checksum (:mod:`~hieradist_lobes.store_checksums`), its
    offsets do not cut its fields into its utterances, a record does not
    decode or holds NaN or inf, or it repeats an utterance of another part.
    With ``values=False`` only each part's index (metadata, IDs, offsets,
    small fields) is read, not the matrices.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> meta = StoreMetadata(labels=["<blank>", "a"], teachers=[{"name": "t"}], frame_rate=0.0, kind="plm",
    ...                      feature_dim=2)
    >>> with TeacherStoreWriter(folder, "train", meta) as writer:
    ...     writer.add("u1", PLMRecord(features=np.ones((2, 2)), tokens=[1], duration=0.5))
    >>> [(check.split, check.utterances, check.checksums, check.problem) for check in verify_store(folder)]
    [('train', 1, True, None)]
    """
    from tqdm import tqdm

    files = _part_files(path)
    if not files:
        raise _no_parts(path)
    results = [_check_part(part, values) for part in tqdm(files, desc="verify", unit="part", disable=not progress)]
    # The metadata most parts share is the store's; groups of parts that agree (differences() has
    # tolerances, so no exact key), each led by its first part.
    groups: List[Tuple[StoreMetadata, List[int]]] = []
    for number, (check, metadata, _) in enumerate(results):
        if check.problem is None:
            group = next((members for lead, members in groups if not lead.differences(metadata)), None)
            if group is None:
                groups.append((metadata, [number]))
            else:
                group.append(number)
    if groups:
        store_metadata, members = max(groups, key=lambda group: len(group[1]))
        lead = results[members[0]][0].path
        for check, metadata, _ in results:
            differences = store_metadata.differences(metadata) if check.problem is None else []
            if differences:
                check.problem = f"other {', '.join(differences)} than most parts ({lead})"
    owner: Dict[str, str] = {}
    for check, _, ids in results:
        if check.problem is None:
            repeated = next((utt for utt in ids if utt in owner), None)
            if repeated is not None:
                check.problem = f"utterance {repeated} is also in {owner[repeated]}"
            else:
                owner.update((utt, check.path) for utt in ids)
    return [check for check, _, _ in results]


def format_checks(checks: Sequence[PartCheck], values: bool = True) -> str:
    """The lines of a verification: damaged parts, parts without checksums, and the total.

    Example
    -------
    >>> print(format_checks([PartCheck("s/train/part-r0-00000.h5", "train", 3, True),
    ...                      PartCheck("s/train/part-r0-00001.h5", "train", 2, True, "values are NaN or inf")]))
    damaged: s/train/part-r0-00001.h5 (values are NaN or inf)
    integrity: 1 of 2 parts damaged; delete each damaged part file and run the script that wrote the store again (it recomputes only the missing utterances)
    """
    damaged = [check for check in checks if check.problem]
    unchecked = [check for check in checks if not check.checksums and not check.problem]
    lines = [f"damaged: {check.path} ({check.problem})" for check in damaged]
    lines += [f"no checksums: {check.path}" for check in unchecked[:5]]
    if len(unchecked) > 5:
        lines.append(f"no checksums: {len(unchecked) - 5} more parts")
    what = "every value read" if values else "metadata and index read, the matrices not (drop --index_only)"
    if damaged:
        lines.append(f"integrity: {len(damaged)} of {len(checks)} parts damaged; delete each damaged part file and "
                     "run the script that wrote the store again (it recomputes only the missing utterances)")
    elif unchecked:
        lines.append(f"integrity: {len(checks)} parts whole as far as can be told ({what}), but {len(unchecked)} "
                     "have no checksums (written by an older version), so changed bytes in them go unnoticed; "
                     "`copy` rewrites the store with checksums")
    else:
        lines.append(f"integrity: all {len(checks)} parts match their checksums ({what})")
    return "\n".join(lines)


def check_store_vocabulary(store: "TeacherStore", labels: Sequence[str]) -> None:
    """Teachers and student must share the label vocabulary, index by index.

    Raises
    ------
    TeacherStoreError
        Naming the store and the first index where the vocabularies differ.
    """
    from hieradist_lobes.tokens import first_difference

    theirs, mine = store.metadata.labels, list(labels)
    if theirs != mine:
        first = first_difference(theirs, mine)
        raise TeacherStoreError(
            f"the teacher store {store.path} has a different label vocabulary from the student: "
            f"{len(theirs)} vs {len(mine)} labels, first difference at index {first} "
            f"({theirs[first] if first < len(theirs) else None!r} vs {mine[first] if first < len(mine) else None!r})"
        )


def writer_process(run_opts: Mapping[str, object]) -> Tuple[int, int, str]:
    """This process's rank, the number of processes and its device, for
    filling a store under ``torchrun`` (each rank on its own GPU)."""
    from speechbrain.utils.distributed import get_rank

    rank = get_rank() or 0
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    device = str(run_opts.get("device") or "cpu")
    if device.startswith("cuda") and world_size > 1 and ":" not in device:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return rank, world_size, device


def copy_store(source: str, destination: str, compression: Optional[str] = None, progress: bool = True,
               checksums: bool = True) -> int:
    """Rewrite the store ``source`` into ``destination`` in the current part layout, with checksums.

    The stored arrays are copied as they are (same dtype, top-k, metadata),
    each record checked on the way (:meth:`TeacherStore.get`).  Resumable:
    utterances already in ``destination`` are skipped.  ``checksums=False``
    (as :class:`TeacherStoreWriter`) only to measure what they cost.

    Returns
    -------
    int
        The number of utterances copied.

    Example
    -------
    >>> import tempfile
    >>> old, new = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> meta = StoreMetadata(labels=["<blank>", "a"], teachers=[{"name": "t"}], frame_rate=0.0, kind="plm",
    ...                      feature_dim=2)
    >>> with TeacherStoreWriter(old, "train", meta) as writer:
    ...     writer.add("u1", PLMRecord(features=np.ones((2, 2)), tokens=[1], duration=0.5))
    >>> copy_store(old, new, progress=False), copy_store(old, new, progress=False)
    (1, 0)
    >>> TeacherStore(new).get("u1").tokens
    [1]
    """
    from tqdm import tqdm

    if os.path.realpath(source) == os.path.realpath(destination):
        raise TeacherStoreError(f"copy {source} to another folder, not onto itself")
    store = TeacherStore(source)
    copied = 0
    for split in store.splits():
        with TeacherStoreWriter(destination, split, store.metadata, compression=compression,
                                checksums=checksums) as writer:
            done = writer.done_ids()
            todo = [utt for utt in store.ids(split) if utt not in done]
            for utt in tqdm(todo, desc=f"copy {split}", unit="utt", disable=not progress):
                fields, _ = store._read_checked(utt)  # refuses damaged or non-finite records
                writer._add_fields(utt, fields, end_of_batch=True)
            copied += len(todo)
    store.close()
    return copied


def format_summary(summary: Dict[str, object]) -> str:
    """Human-readable text of :meth:`TeacherStore.summary`."""
    return CODECS[summary.get("kind", "asr")].format_summary(summary)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m hieradist_lobes.teacher_store info PATH``, ``verify PATH`` or ``copy SOURCE DESTINATION``."""
    parser = argparse.ArgumentParser(description="Inspect a teacher store.")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print a summary of a store")
    info.add_argument("path", type=path_argument, help="the store folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    copy = commands.add_parser("copy", help="rewrite a store in the current part layout (resumable)")
    copy.add_argument("source", type=path_argument, help="the store folder to read")
    copy.add_argument("destination", type=path_argument, help="the new store folder")
    copy.add_argument("--compression", choices=COMPRESSIONS, default=None)
    verify = commands.add_parser("verify", help="check every part's checksums and values; exit 1 if any is damaged")
    verify.add_argument("path", type=path_argument, help="the store folder")
    for command in (info, verify):
        command.add_argument("--index_only", action="store_true",
                             help="read each part's metadata and index, not its matrices (fast, but a changed "
                                  "value goes unnoticed)")
    args = parser.parse_args(argv)
    try:
        if args.command == "copy":
            copied = copy_store(args.source, args.destination, args.compression)
            print(f"copied {copied} utterances to {args.destination}")
            return
        # info verifies first: a summary of a damaged store would call it healthy.
        checks = verify_store(args.path, values=not args.index_only, progress=not getattr(args, "json", False))
        damaged = [check for check in checks if check.problem]
        summary = None if damaged or args.command == "verify" else TeacherStore(args.path).summary()
    except TeacherStoreError as error:  # the message says what to do; a traceback would bury it
        parser.exit(1, f"error: {error}\n")
    if summary is not None and args.json:
        summary["integrity"] = {"parts": len(checks), "values_verified": not args.index_only,
                                "without_checksums": [check.path for check in checks if not check.checksums]}
        print(json.dumps(summary, indent=2))
        return
    if summary is not None:
        print(format_summary(summary))
    report = format_checks(checks, values=not args.index_only)
    if damaged:
        parser.exit(1, report + "\n")
    print(report)


if __name__ == "__main__":
    main()
