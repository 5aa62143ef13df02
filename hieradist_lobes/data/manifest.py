"""The manifest schema shared by every corpus, and its reader and writer.

Every data preparation of this project (the built-in synthetic corpus,
TIMIT, AISHELL-1) writes ``train.csv``, ``valid.csv`` and ``test.csv`` with
the columns of :data:`MANIFEST_FIELDS`, so that a recipe runs on any corpus by
changing ``data_folder``:

``ID``        utterance identifier, unique in the corpus
``duration``  length of the audio in seconds
``wav``       absolute path of the audio file
``spk_id``    speaker identifier
``phn``       space-separated phones of :data:`~hieradist_lobes.data.phones.PHONES_39`
              (for AISHELL-1, pinyin initials and finals)
``wrd``       space-separated words
``char``      space-separated characters, ``_`` between words (no ``_`` for
              Chinese, whose word boundaries carry no meaning for scoring)

Example
-------
>>> import tempfile, os
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "train.csv")
>>> row = {"ID": "u1", "duration": 1.5, "wav": "/a.wav", "spk_id": "s1",
...        "phn": "hh ah l ow", "wrd": "HELLO", "char": chars_of_words("HELLO")}
>>> write_manifest(path, [row])
>>> read_manifest(path)[0]["char"]
'H E L L O'
"""

from __future__ import annotations

import csv
import io
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from hieradist_lobes.errors import ReportedError

MANIFEST_FIELDS: List[str] = ["ID", "duration", "wav", "spk_id", "phn", "wrd", "char"]
# What every manifest needs; a user's own CSV (``dataset: csv``) has these and
# the label column of the YAML's ``unit``.
CORE_FIELDS: List[str] = ["ID", "duration", "wav"]
SPLITS: List[str] = ["train", "valid", "test"]


class ManifestError(ReportedError, ValueError):
    """A manifest is missing, malformed, or points at bad audio."""


def chars_of_words(words: str, word_separator: Optional[str] = "_") -> str:
    """Space-separated characters of ``words``, ``word_separator`` between words.

    Example
    -------
    >>> chars_of_words("THE CAT")
    'T H E _ C A T'
    >>> chars_of_words("今天 天气", word_separator=None)
    '今 天 天 气'
    """
    pieces: List[str] = []
    for index, word in enumerate(words.split()):
        if index and word_separator:
            pieces.append(word_separator)
        pieces.extend(word)
    return " ".join(pieces)


def write_manifest(path: str, rows: Iterable[Dict[str, object]], fields: Sequence[str] = MANIFEST_FIELDS) -> None:
    """Write ``rows`` to the CSV ``path`` atomically.

    The file is written under a temporary name and renamed, so an interrupted
    preparation never leaves a truncated manifest that looks complete.
    """
    from hieradist_lobes.files import staged_file

    with staged_file(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            row = dict(row)
            if isinstance(row.get("duration"), float):
                row["duration"] = f"{row['duration']:.4f}"
            writer.writerow(row)


def speaker_subset(manifest: str, path: str, fraction: float) -> str:
    """Write to ``path`` the first ``fraction`` of each speaker's utterances
    of ``manifest`` (at least one each, manifest order kept): fewer
    utterances, the same voices, for a low-resource regime.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rows = [{"ID": f"{spk}_{i}", "duration": 1.0, "wav": "/a.wav", "spk_id": spk, "phn": "", "wrd": "A",
    ...          "char": "A"} for spk in ("s1", "s2") for i in range(4)]
    >>> write_manifest(os.path.join(folder, "train.csv"), rows)
    >>> subset = speaker_subset(os.path.join(folder, "train.csv"), os.path.join(folder, "quarter.csv"), 0.25)
    >>> [row["ID"] for row in read_manifest(subset)]
    ['s1_0', 's2_0']
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    fields, rows = read_rows(manifest)
    if "spk_id" not in fields:
        raise ManifestError(f"{manifest} has no spk_id column: a subset by speaker needs it")
    by_speaker: Dict[str, int] = {}
    for row in rows:
        by_speaker[row["spk_id"]] = by_speaker.get(row["spk_id"], 0) + 1
    quota = {speaker: max(1, round(fraction * count)) for speaker, count in by_speaker.items()}
    kept, taken = [], {speaker: 0 for speaker in by_speaker}
    for row in rows:
        if taken[row["spk_id"]] < quota[row["spk_id"]]:
            taken[row["spk_id"]] += 1
            kept.append(row)
    write_manifest(path, kept, fields)
    return path


def expand_data_root(path: str, data_root: Optional[str]) -> str:
    """``path`` with ``$data_root`` replaced, as SpeechBrain's CSV manifests write it.

    Example
    -------
    >>> expand_data_root("$data_root/a.wav", "/corpora/mine"), expand_data_root("/b.wav", None)
    ('/corpora/mine/a.wav', '/b.wav')
    """
    return path.replace("$data_root", str(data_root)) if data_root and "$data_root" in path else path


def read_rows(path: str) -> Tuple[List[str], List[Dict[str, str]]]:
    """The column names and rows of a CSV manifest, as text.

    The one reader of manifests (preparations, checks, datasets): UTF-8 with
    or without a byte-order mark (spreadsheets write one), values taken as
    they are (no ``$`` substitution behind the user's back; ``$data_root``
    in wav paths is expanded where audio is opened).

    Raises
    ------
    ManifestError
        If the file does not exist or is not UTF-8 text (naming the line).
    """
    if not os.path.isfile(path):
        raise ManifestError(f"manifest {path} does not exist")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ManifestError(f"manifest {path}, line {line}: not UTF-8 text ({error.reason} at byte {error.start}); "
                            "save it as UTF-8") from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [{key: value for key, value in row.items() if key is not None} for row in reader]
    return list(reader.fieldnames or []), rows


def manifest_data(path: str) -> Dict[str, Dict[str, object]]:
    """A manifest as SpeechBrain's ``DynamicItemDataset`` takes it: ID ->
    the other columns, ``duration`` as a float.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> _ = open(path, "w", encoding="utf-8-sig").write("ID,duration,wav,wrd\\nu1,1.5,/a.wav,COST $5\\n")
    >>> manifest_data(path)
    {'u1': {'duration': 1.5, 'wav': '/a.wav', 'wrd': 'COST $5'}}
    """
    data: Dict[str, Dict[str, object]] = {}
    for row in read_manifest(path):
        entry: Dict[str, object] = {key: value for key, value in row.items() if key != "ID"}
        entry["duration"] = float(row["duration"])
        data[row["ID"]] = entry
    return data


def read_manifest(path: str, fields: Sequence[str] = CORE_FIELDS, unique_ids: bool = True) -> List[Dict[str, str]]:
    """Read a manifest and check that it has the columns ``fields``.

    For a complete check of the rows and their audio, see
    :mod:`hieradist_lobes.data.validation`.

    Raises
    ------
    ManifestError
        If the file does not exist, lacks a column, or (``unique_ids``)
        repeats an ID.
    """
    fieldnames, rows = read_rows(path)
    missing = [field for field in fields if field not in fieldnames]
    if missing:
        raise ManifestError(f"manifest {path} lacks the column(s) {', '.join(missing)}")
    seen = set()
    for line, row in enumerate(rows if unique_ids else [], start=2):
        if row["ID"] in seen:
            raise ManifestError(f"manifest {path}, line {line}: ID {row['ID']!r} appears twice")
        seen.add(row["ID"])
    return rows


def data_root(hparams: Mapping[str, object]) -> Optional[str]:
    """What ``$data_root`` in a user's manifest stands for: the YAML's ``data_folder``."""
    folder = hparams.get("data_folder")
    return os.path.abspath(str(folder)) if folder else None


def median_duration(manifest: str) -> float:
    """Median utterance duration (seconds) of a manifest."""
    durations = sorted(float(row["duration"]) for row in read_manifest(manifest))
    return round(durations[len(durations) // 2], 3) if durations else 0.0
