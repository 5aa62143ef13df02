"""Check a manifest completely before the first training step.

Every recipe validates its manifests once, before training, storing teacher
outputs or extracting PLM features, so that a bad row is reported with its
manifest, line and utterance ID at start-up, not as a traceback from a
DataLoader worker hours later, and so that nothing wrong trains silently.

Checked per row: the columns ``ID``, ``duration``, ``wav`` and the label
column exist; IDs are unique; the duration is a positive number; the audio
file exists and opens, has the expected sample rate and one channel (unless
the YAML asks for ``resample`` / ``mix_down``), is not empty, and lasts the
manifest's duration within ``duration_tolerance`` seconds; the transcript
is not empty and its labels are in the vocabulary.

Audio headers are read in parallel threads (float files whole: only their
samples can be NaN or inf).  The result is cached by the manifest's path,
size and modification time, the size and modification time of every audio
file it names (:func:`audio_fingerprint`) and the check's settings, so a
re-run costs one ``stat`` per file.  Every read in training checks again
what the check promised (:func:`~hieradist_lobes.data.pipelines.read_signal`).  All problems are reported together
(:class:`ManifestCheckError`, with the full list written to a report file);
``bad_rows: drop`` instead writes a copy of the manifest without the bad
rows, says how many were dropped, and the recipe uses that copy.

Example
-------
>>> import os, tempfile, numpy, soundfile
>>> folder = tempfile.mkdtemp()
>>> soundfile.write(os.path.join(folder, "a.wav"), numpy.zeros(8000), 16000)
>>> with open(os.path.join(folder, "train.csv"), "w") as handle:
...     _ = handle.write("ID,duration,wav,wrd\\n")
...     _ = handle.write(f"u1,0.5,{folder}/a.wav,HELLO\\n")
...     _ = handle.write(f"u2,0.5,{folder}/missing.wav,WORLD\\n")
>>> result = check_manifest(os.path.join(folder, "train.csv"), "wrd")
>>> len(result.rows), [problem.line for problem in result.problems]
(1, [3])
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from hieradist_lobes.data.manifest import CORE_FIELDS, ManifestError, data_root, expand_data_root, read_rows, write_manifest
from hieradist_lobes.files import write_json

logger = logging.getLogger(__name__)

CHECK_VERSION = 1
# How many problems an error message lists (all of them go to the report file).
MESSAGE_PROBLEMS = 20
BAD_ROWS = ("error", "drop")
# soundfile's subtypes whose samples can be NaN or inf.
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


@dataclass
class Problem:
    """One bad row (``line`` 1 is the header: a problem of the whole file)."""

    manifest: str
    line: int
    utt_id: str
    message: str

    def __str__(self) -> str:
        where = f"manifest {self.manifest}, line {self.line}"
        if self.utt_id:
            where += f", utterance {self.utt_id!r}"
        return f"{where}: {self.message}"


@dataclass
class CheckResult:
    """The rows without problems (in manifest order), and the problems."""

    rows: List[Dict[str, str]]
    problems: List[Problem] = field(default_factory=list)
    fieldnames: List[str] = field(default_factory=list)


class ManifestCheckError(ManifestError):
    """Rows of a manifest are bad; the message lists them."""


LabelCheck = Callable[[str], Optional[str]]


def label_check(tokenizer, split_labels: Optional[Callable[[str], Sequence[str]]] = None) -> LabelCheck:
    """A function from a manifest label cell to a problem (or None).

    Arguments
    ---------
    tokenizer : LabelTokenizer
        The vocabulary.  Without ``<unk>``, every label must be in it; with
        ``<unk>`` (PLM wordpieces) unseen labels are allowed, by design.
    split_labels : callable, optional
        Cell to labels (default: split on spaces).  If it has an
        ``unknown_piece`` attribute (the PLM's ``[UNK]``), a transcript
        containing that piece is a problem: the PLM cannot represent it.

    Example
    -------
    >>> from hieradist_lobes.tokens import build_label_encoder
    >>> check = label_check(build_label_encoder("phn", "phones39"))
    >>> check("k ae t") is None, check("k ae xx"), check("  ")
    (True, "labels not in the vocabulary: 'xx'", 'empty transcript')
    """
    split = split_labels or str.split
    unknown_piece = getattr(split_labels, "unknown_piece", None)
    known = tokenizer.lab2ind
    open_vocabulary = hasattr(tokenizer, "unk_label")

    def check(text: str) -> Optional[str]:
        labels = list(split(text or ""))
        if not labels:
            return "empty transcript"
        if unknown_piece and unknown_piece in labels:
            return f"the pre-trained LM has no token for part of {text!r} (it would become {unknown_piece})"
        if not open_vocabulary:
            missing = sorted({label for label in labels if label not in known})
            if missing:
                return f"labels not in the vocabulary: {', '.join(repr(m) for m in missing[:8])}"
        return None

    return check


def _audio_info(path: str):
    """(sample rate, channels, frames) of an audio file, or the error text.

    Float files are read whole, since only their samples can be NaN or inf
    (integer PCM cannot hold either, so its header says enough).
    """
    import numpy
    import soundfile

    try:
        info = soundfile.info(path)
        nonfinite = 0
        if info.subtype in FLOAT_SUBTYPES:
            for block in soundfile.blocks(path, blocksize=1 << 16, dtype="float32"):
                nonfinite += int(block.size - numpy.isfinite(block).sum())
    except Exception as error:  # soundfile raises several types for bad files
        return f"cannot open {path}: {error}"
    if nonfinite:
        return (f"{path} holds {nonfinite} non-finite sample(s) (NaN or inf): re-export the audio, or leave "
                "the utterance out")
    return (int(info.samplerate), int(info.channels), int(info.frames))


def check_manifest(
    path: str,
    unit: Union[str, Sequence[str]],
    labels_ok: Optional[LabelCheck] = None,
    sample_rate: int = 16000,
    duration_tolerance: float = 0.05,
    resample: bool = False,
    mix_down: bool = False,
    num_workers: int = 8,
    progress: bool = False,
    data_root: Optional[str] = None,
) -> CheckResult:
    """Check every row of ``path`` (see the module docstring).

    Arguments
    ---------
    path : str
        The CSV.
    unit : str or sequence of str
        The label column (or columns, each checked by ``labels_ok``).
    labels_ok : callable, optional
        :func:`label_check` of the vocabulary (default: non-empty only).
    sample_rate : int
        The rate the model expects.
    duration_tolerance : float
        Allowed difference between the manifest's and the file's duration (s).
    resample, mix_down : bool
        Accept other rates / several channels (the data pipeline converts).
    num_workers : int
        Threads reading audio headers.
    progress : bool
        Show a progress bar.
    data_root : str, optional
        What ``$data_root`` in a wav path stands for.
    """
    units = [unit] if isinstance(unit, str) else list(unit)
    problems: List[Problem] = []
    fieldnames, table = read_rows(path)
    missing = [name for name in list(CORE_FIELDS) + units if name not in fieldnames]
    if missing:
        raise ManifestCheckError(
            f"manifest {path}, line 1: no column {', '.join(missing)} (it has {', '.join(fieldnames) or 'none'}); "
            f"a manifest needs ID, duration, wav and the label column of the YAML's unit ({', '.join(units)})")
    if not table:
        raise ManifestCheckError(f"manifest {path} has no rows (only a header, or empty)")
    labels_ok = labels_ok or (lambda text: None if (text or "").strip() else "empty transcript")

    first_line: Dict[str, int] = {}
    bad = set()

    def report(line: int, utt_id: str, message: str) -> None:
        problems.append(Problem(path, line, utt_id, message))
        bad.add(line)

    # Per row: (line, ID, duration or None, audio path); the audio is checked below.
    entries = []
    for line, row in enumerate(table, start=2):
        utt_id = (row.get("ID") or "").strip()
        if not utt_id:
            report(line, "", "empty ID")
        elif utt_id in first_line:
            report(line, utt_id, f"ID also on line {first_line[utt_id]}; IDs must be unique")
        else:
            first_line[utt_id] = line
        try:
            duration: Optional[float] = float(row.get("duration") or "")
            if not math.isfinite(duration) or duration <= 0:
                raise ValueError
        except ValueError:
            duration = None
            report(line, utt_id, f"duration {row.get('duration')!r} is not a positive number of seconds")
        wav = expand_data_root((row.get("wav") or "").strip(), data_root)
        if not wav:
            report(line, utt_id, "empty wav path")
        for column in units:
            problem = labels_ok(row.get(column) or "")
            if problem:
                report(line, utt_id, f"{column}: {problem}")
        entries.append((line, utt_id, duration, wav))

    from tqdm import tqdm

    existing = sorted({wav for *_, wav in entries if wav and os.path.isfile(wav)})
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        infos = dict(zip(existing, tqdm(pool.map(_audio_info, existing), total=len(existing), unit="file",
                                        desc=f"checking audio of {os.path.basename(path)}",
                                        disable=not progress)))
    for line, utt_id, duration, wav in entries:
        if not wav:
            continue
        if wav not in infos:
            if os.path.isdir(wav):
                report(line, utt_id, f"audio path {wav} is a folder, not an audio file: give the wav file's path")
            else:
                report(line, utt_id, f"audio file {wav} does not exist")
            continue
        info = infos[wav]
        if isinstance(info, str):
            report(line, utt_id, info)
            continue
        rate, channels, frames = info
        if frames == 0:
            report(line, utt_id, f"{wav} holds no samples")
            continue
        if rate != sample_rate and not resample:
            report(line, utt_id, f"{wav} is {rate} Hz, the model expects {sample_rate} Hz "
                                 "(convert it, or set resample: True)")
        if channels != 1 and not mix_down:
            report(line, utt_id, f"{wav} has {channels} channels, the model expects mono "
                                 "(convert it, or set mix_down: True)")
        actual = frames / rate
        if duration is not None and abs(actual - duration) > duration_tolerance:
            report(line, utt_id, f"duration {duration:g} s in the manifest but {actual:.3f} s in {wav} "
                                 "(truncated or replaced file?)")
    problems.sort(key=lambda problem: problem.line)
    return CheckResult(rows=[row for line, row in enumerate(table, start=2) if line not in bad], problems=problems,
                       fieldnames=fieldnames)


def _settings_key(path: str, settings: Dict[str, object]) -> str:
    stat = os.stat(path)
    text = json.dumps({"version": CHECK_VERSION, "path": os.path.abspath(path), "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def audio_fingerprint(path: str, data_root: Optional[str] = None) -> str:
    """A digest of the size and modification time of every audio file that
    manifest ``path`` names (missing files count as such): what a cached
    check vouches for changes with it.

    Example
    -------
    >>> import os, tempfile, numpy, soundfile
    >>> folder = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(folder, "a.wav"), numpy.zeros(800), 16000)
    >>> with open(os.path.join(folder, "m.csv"), "w") as handle:
    ...     _ = handle.write(f"ID,duration,wav,wrd\\nu1,0.05,{folder}/a.wav,HI\\n")
    >>> before = audio_fingerprint(os.path.join(folder, "m.csv"))
    >>> soundfile.write(os.path.join(folder, "a.wav"), numpy.zeros(800), 8000)
    >>> before == audio_fingerprint(os.path.join(folder, "m.csv"))
    False
    """
    digest = hashlib.sha256()
    for row in read_rows(path)[1]:
        wav = expand_data_root((row.get("wav") or "").strip(), data_root)
        try:
            stat = os.stat(wav)
            digest.update(f"{wav}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{wav}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def validated_manifest(
    path: str,
    unit: str,
    cache_folder: str,
    labels_ok: Optional[LabelCheck] = None,
    vocabulary_key: str = "",
    bad_rows: str = "error",
    sample_rate: int = 16000,
    duration_tolerance: float = 0.05,
    resample: bool = False,
    mix_down: bool = False,
    num_workers: int = 8,
    progress: bool = True,
    data_root: Optional[str] = None,
) -> str:
    """Validate ``path`` once (cached) and return the manifest to use.

    Arguments
    ---------
    path, unit, labels_ok, sample_rate, duration_tolerance, resample, mix_down, num_workers, progress, data_root
        As for :func:`check_manifest`.
    cache_folder : str
        Where the cache, the problem reports and the filtered copies go.
    vocabulary_key : str
        Identifies the vocabulary that ``labels_ok`` checks (part of the cache key).
    bad_rows : str
        ``error``: any problem stops with :class:`ManifestCheckError`;
        ``drop``: the bad rows are left out (a copy of the manifest without
        them is returned) and counted in a warning.

    Returns
    -------
    str
        ``path``, or with ``drop`` and problems, the filtered copy.
    """
    if bad_rows not in BAD_ROWS:
        raise ValueError(f"bad_rows must be one of {', '.join(BAD_ROWS)}, got {bad_rows!r}")
    settings = {"unit": unit, "vocabulary": vocabulary_key, "bad_rows": bad_rows, "sample_rate": sample_rate,
                "duration_tolerance": duration_tolerance, "resample": resample, "mix_down": mix_down,
                "data_root": data_root}
    if not os.path.isfile(path):
        raise ManifestError(f"manifest {path} does not exist")
    key = _settings_key(path, settings)
    name = os.path.splitext(os.path.basename(path))[0]
    os.makedirs(cache_folder, exist_ok=True)
    record_path = os.path.join(cache_folder, f"{name}-{key}.json")
    # The cache vouches for the audio too: a file replaced, truncated or touched since the check means a new one.
    audio = audio_fingerprint(path, data_root)
    if os.path.isfile(record_path):
        with open(record_path, encoding="utf-8") as handle:
            record = json.load(handle)
        if record.get("use") and os.path.isfile(record["use"]) and record.get("audio") == audio:
            return record["use"]
        if record.get("use"):
            logger.info("audio files of %s changed since its last check: checking it again", path)

    result = check_manifest(path, unit, labels_ok, sample_rate, duration_tolerance, resample, mix_down,
                            num_workers, progress, data_root)
    use = path
    if result.problems:
        report = os.path.join(cache_folder, f"{name}-{key}.problems.txt")
        with open(report, "w", encoding="utf-8") as handle:
            handle.write("\n".join(str(problem) for problem in result.problems) + "\n")
        bad = len({problem.line for problem in result.problems})
        # Every row with labels outside the vocabulary: the vocabulary does not fit the column (e.g. a
        # character model with the phone set), which the list of rows would not say.
        vocabulary_lines = {problem.line for problem in result.problems
                            if "labels not in the vocabulary" in problem.message}
        if not result.rows and len(vocabulary_lines) == bad:
            raise ManifestCheckError(
                f"no row of manifest {path} has its '{unit}' labels in the model's vocabulary (the first: "
                f"{result.problems[0].message}): the vocabulary does not fit this column. Check unit and label_set "
                "in the YAML (label_set phones39 is the 39 TIMIT phones, for unit: phn; a character or word model "
                f"needs label_set: from_data). All problems: {report}")
        if bad_rows == "error":
            listed = "\n  ".join(str(problem) for problem in result.problems[:MESSAGE_PROBLEMS])
            more = len(result.problems) - MESSAGE_PROBLEMS
            raise ManifestCheckError(
                f"{bad} bad row(s) in manifest {path}:\n  {listed}"
                + (f"\n  ... and {more} more" if more > 0 else "")
                + f"\nAll problems: {report}. Fix them, or set bad_rows: drop to train without these rows.")
        if not result.rows:
            raise ManifestCheckError(f"every row of manifest {path} is bad ({bad} rows); the first: "
                                     f"{result.problems[0]}. All problems: {report}")
        use = os.path.join(cache_folder, f"{name}-{key}.csv")
        write_manifest(use, result.rows, result.fieldnames)
        logger.warning("dropped %d of %d rows of %s (bad_rows: drop); problems listed in %s; using %s",
                       bad, bad + len(result.rows), path, report, use)
    write_json(record_path, {"manifest": os.path.abspath(path), "use": use, "problems": len(result.problems),
                             "rows": len(result.rows), "audio": audio})
    return use


def validate_manifest(path: str, require: Sequence[str] = ("phn", "wrd"), sample_rate: int = 16000,
                      duration_tolerance: float = 0.01) -> List[Dict[str, str]]:
    """Check ``path`` (:func:`check_manifest`) with each ``require`` column
    non-empty, and return its rows.

    Raises
    ------
    ManifestCheckError
        Listing every problem, each with the manifest, line and utterance ID.
    """
    result = check_manifest(path, require, sample_rate=sample_rate, duration_tolerance=duration_tolerance)
    if result.problems:
        raise ManifestCheckError("\n".join(str(problem) for problem in result.problems))
    return result.rows


def checked_manifests(hparams: Mapping[str, object], manifests: Mapping[str, str], splits: Sequence[str],
                      tokenizer, split_labels: Optional[Callable[[str], Sequence[str]]] = None) -> Dict[str, str]:
    """Validate a recipe's manifests of ``splits`` before anything runs, with
    the YAML's settings (``bad_rows``, ``sample_rate``,
    ``duration_tolerance``, ``resample``, ``mix_down``,
    ``manifest_check_folder``): every problem of a split is reported at
    once, or with ``bad_rows: drop`` the bad rows are left out and counted.

    Returns split -> the manifest to use (a filtered copy after ``drop``).
    """
    from speechbrain.utils.distributed import if_main_process

    from hieradist_lobes.hparams import HparamsError

    checked = dict(manifests)
    vocabulary_key = "|".join(tokenizer.labels()) + f"|{getattr(split_labels, 'unknown_piece', '')}"
    for split in splits:
        if split not in manifests:
            raise HparamsError(f"no {split!r} manifest; the manifests are {', '.join(manifests)}")
        checked[split] = validated_manifest(
            manifests[split], hparams["unit"], hparams["manifest_check_folder"],
            labels_ok=label_check(tokenizer, split_labels), vocabulary_key=vocabulary_key,
            bad_rows=hparams["bad_rows"], sample_rate=int(hparams["sample_rate"]),
            duration_tolerance=float(hparams["duration_tolerance"]), resample=bool(hparams["resample"]),
            mix_down=bool(hparams["mix_down"]), progress=if_main_process(), data_root=data_root(hparams),
        )
    return checked
