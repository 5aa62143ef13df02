"""Helpers shared by the corpus preparations: skip-if-done, never overwriting a
user's file, and audio checks.

A preparation records what it wrote in ``<save_folder>/prepare_options.json``
(its options, whether it finished, and the SHA-256 of each manifest it
wrote).  It skips when that record says the same options finished and the
manifests are unchanged; it rewrites only manifests it wrote itself and that
nobody edited since; any other ``train.csv``, ``valid.csv`` or ``test.csv``
stops it with an error naming the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence

from hieradist_lobes.cli import path_argument
from hieradist_lobes.errors import ReportedError
from hieradist_lobes.files import file_sha256, write_json
from hieradist_lobes.data.manifest import MANIFEST_FIELDS, SPLITS, read_manifest, write_manifest

OPTIONS_FILE = "prepare_options.json"


class PreparationError(ReportedError, ValueError):
    """A corpus on disk is missing a file or has a malformed one."""


def manifest_paths(save_folder: str) -> Dict[str, str]:
    """Split name -> manifest path inside ``save_folder``."""
    return {split: os.path.join(save_folder, f"{split}.csv") for split in SPLITS}


def _read_marker(save_folder: str) -> Optional[Dict[str, object]]:
    """The preparation's record in ``save_folder`` (None if absent or unreadable)."""
    path = os.path.join(save_folder, OPTIONS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(marker, dict):
        return None
    if "manifests" not in marker:
        # Written before manifests were recorded (a plain dict of options): the
        # manifests beside it are that finished preparation's, as they are now.
        found = {os.path.basename(p): file_sha256(p) for p in manifest_paths(save_folder).values() if os.path.isfile(p)}
        return {"options": marker, "complete": True, "manifests": found}
    if not isinstance(marker.get("manifests"), dict):
        return None
    return marker


def _write_marker(save_folder: str, marker: Mapping[str, object]) -> None:
    write_json(os.path.join(save_folder, OPTIONS_FILE), dict(marker), indent=2, ensure_ascii=False)


def already_prepared(save_folder: str, options: Mapping[str, object]) -> bool:
    """True when the manifests exist, were made by a finished preparation with
    the same ``options``, are unchanged since, and every audio file they
    name is still there."""
    marker = _read_marker(save_folder)
    if marker is None or not marker.get("complete") or marker.get("options") != dict(options):
        return False
    for path in manifest_paths(save_folder).values():
        name = os.path.basename(path)
        if not os.path.isfile(path) or marker["manifests"].get(name) != file_sha256(path):
            return False
        try:
            if not all(os.path.isfile(row["wav"]) for row in read_manifest(path)):
                return False
        except ValueError:
            return False
    return True


def start_preparation(save_folder: str, options: Mapping[str, object]) -> None:
    """Claim ``save_folder`` for a (re)preparation, never overwriting a user's file.

    A manifest that already exists may be rewritten only if the marker
    (``prepare_options.json``) records it as written by a preparation and it
    is unchanged since (same SHA-256): a manifest the user wrote or edited
    stops the preparation with an error naming it.  The marker is then set
    to "not complete" until :func:`finish_preparation`, so that a crash half
    way through leaves nothing claiming a finished run.

    Raises
    ------
    PreparationError
        Naming the file that would be overwritten and what to do.
    """
    os.makedirs(save_folder, exist_ok=True)
    marker = _read_marker(save_folder)
    recorded = dict(marker["manifests"]) if marker else {}
    for path in manifest_paths(save_folder).values():
        name = os.path.basename(path)
        if not os.path.exists(path):
            recorded.pop(name, None)
            continue
        if name not in recorded:
            raise PreparationError(
                f"{path} exists and was not written by a preparation of this project (no record of it in "
                f"{os.path.join(save_folder, OPTIONS_FILE)}): refusing to overwrite it. To train on your own "
                "manifests use dataset: csv with train_csv/valid_csv/test_csv; otherwise move the file away or "
                "choose another folder")
        if recorded[name] != file_sha256(path):
            raise PreparationError(
                f"{path} was changed after the preparation wrote it: refusing to overwrite your edits. To train on "
                "the edited manifests use dataset: csv with train_csv/valid_csv/test_csv; to prepare again, move "
                "the file away or choose another folder")
    _write_marker(save_folder, {"options": dict(options), "complete": False, "manifests": recorded})


def write_prepared_manifest(save_folder: str, path: str, rows: Iterable[Mapping[str, object]],
                            fields: Sequence[str] = MANIFEST_FIELDS) -> None:
    """Write one manifest of a preparation and record it in the marker (as soon
    as it is written, so that a crash leaves it known as the preparation's own)."""
    write_manifest(path, rows, fields)
    marker = _read_marker(save_folder) or {"options": {}, "complete": False, "manifests": {}}
    marker["manifests"][os.path.basename(path)] = file_sha256(path)
    marker["complete"] = False
    _write_marker(save_folder, marker)


def finish_preparation(save_folder: str, options: Mapping[str, object]) -> None:
    """Record a finished preparation with its ``options`` (written last; the
    manifests' hashes were recorded by :func:`write_prepared_manifest`)."""
    marker = _read_marker(save_folder) or {"manifests": {}}
    _write_marker(save_folder, {"options": dict(options), "complete": True, "manifests": marker["manifests"]})


def audio_duration(path: str, expected_rate: int = 16000) -> float:
    """Duration in seconds of the audio file ``path``, checking its rate.

    Raises
    ------
    PreparationError
        If the file cannot be read or is not at ``expected_rate``.
    """
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises several types for bad files
        raise PreparationError(f"cannot read audio file {path}: {error}") from error
    if info.samplerate != expected_rate:
        raise PreparationError(f"audio file {path} is {info.samplerate} Hz, expected {expected_rate} Hz")
    return info.frames / info.samplerate


def preparation_main(prepare: Callable[[str, str], Dict[str, str]], corpus: str, data_folder_help: str,
                     argv: Optional[Sequence[str]] = None) -> None:
    """The command line of a corpus preparation: ``--data_folder``, ``--save_folder``."""
    parser = argparse.ArgumentParser(description=f"Prepare {corpus} manifests (train/valid/test.csv).")
    parser.add_argument("--data_folder", required=True, type=path_argument, help=data_folder_help)
    parser.add_argument("--save_folder", required=True, type=path_argument, help="where the manifests go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifests = prepare(args.data_folder, args.save_folder)
    except PreparationError as error:  # the message names the file and the fix; a traceback would bury it
        parser.exit(1, f"error: {error}\n")
    for split, path in manifests.items():
        print(f"{split}: {path}")
