"""Helpers shared by the corpus preparations: skip-if-done and audio checks."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Callable, Dict, Mapping, Optional, Sequence

from hieradist_lobes.data.manifest import SPLITS, read_manifest

OPTIONS_FILE = "prepare_options.json"


class PreparationError(ValueError):
    """A corpus on disk is missing a file or has a malformed one."""


def manifest_paths(save_folder: str) -> Dict[str, str]:
    """Split name -> manifest path inside ``save_folder``."""
    return {split: os.path.join(save_folder, f"{split}.csv") for split in SPLITS}


def already_prepared(save_folder: str, options: Mapping[str, object]) -> bool:
    """True when the manifests exist, were made with the same ``options``,
    and every audio file they name is still there."""
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if not os.path.isfile(options_path):
        return False
    with open(options_path, encoding="utf-8") as handle:
        try:
            if json.load(handle) != dict(options):
                return False
        except json.JSONDecodeError:
            return False
    try:
        for path in manifest_paths(save_folder).values():
            if not all(os.path.isfile(row["wav"]) for row in read_manifest(path)):
                return False
    except ValueError:
        return False
    return True


def forget_options(save_folder: str) -> None:
    """Remove the options record before rewriting the manifests.

    A crash half way through then leaves nothing claiming a finished run.
    """
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if os.path.exists(options_path):
        os.remove(options_path)


def record_options(save_folder: str, options: Mapping[str, object]) -> None:
    """Record the options of a finished preparation (written last)."""
    with open(os.path.join(save_folder, OPTIONS_FILE), "w", encoding="utf-8") as handle:
        json.dump(dict(options), handle, indent=2, ensure_ascii=False)


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
    parser.add_argument("--data_folder", required=True, help=data_folder_help)
    parser.add_argument("--save_folder", required=True, help="where the manifests go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for split, path in prepare(args.data_folder, args.save_folder).items():
        print(f"{split}: {path}")
