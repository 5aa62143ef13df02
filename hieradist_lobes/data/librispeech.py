"""LibriSpeech preparation (OpenSLR 12) to the project's manifest schema.

Expected layout (``data_folder`` holds the unpacked parts, or the
``LibriSpeech`` folder the archives unpack into)::

    <data_folder>/LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    <data_folder>/LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac
    <data_folder>/LibriSpeech/dev-clean/...
    <data_folder>/LibriSpeech/test-clean/...

Each line of a ``.trans.txt`` file is ``<utterance ID> <WORDS>``.  By default
``train`` is ``train-clean-100``, ``valid`` is ``dev-clean`` and ``test`` is
``test-clean``; other parts can be named (several for train, e.g.
``train-clean-100,train-clean-360``).  Words are kept upper-case as
transcribed; ``char`` has ``_`` between words; ``phn`` is empty (LibriSpeech
has no phone transcription: use ``unit: wrd`` or ``char``).

Usage::

    python -m hieradist_lobes.data.librispeech --data_folder /corpora/LibriSpeech --save_folder data/librispeech

Example
-------
>>> DEFAULT_PARTS["valid"]
('dev-clean',)
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from hieradist_lobes.data.common import (
    PreparationError,
    already_prepared,
    audio_duration,
    finish_preparation,
    manifest_paths,
    preparation_main,
    start_preparation,
    write_prepared_manifest,
)
from hieradist_lobes.data.manifest import chars_of_words

logger = logging.getLogger(__name__)

DEFAULT_PARTS: Dict[str, Tuple[str, ...]] = {
    "train": ("train-clean-100",),
    "valid": ("dev-clean",),
    "test": ("test-clean",),
}


def read_transcripts(path: str) -> Dict[str, str]:
    """Utterance ID -> words of one ``.trans.txt`` file.

    Raises
    ------
    PreparationError
        Naming the file and line of a malformed line.
    """
    transcripts = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise PreparationError(f"{path}, line {line_number}: expected '<utterance ID> <words>', "
                                       f"got {line!r}")
            transcripts[parts[0]] = " ".join(parts[1].split())
    return transcripts


def _part_rows(part_folder: str, progress: bool) -> List[Dict[str, object]]:
    from tqdm import tqdm

    transcript_files = sorted(glob.glob(os.path.join(part_folder, "*", "*", "*.trans.txt")))
    if not transcript_files:
        raise PreparationError(f"{part_folder} holds no <speaker>/<chapter>/*.trans.txt files; "
                               "is it an unpacked LibriSpeech part?")
    rows = []
    for transcript_file in tqdm(transcript_files, desc=f"LibriSpeech {os.path.basename(part_folder)}",
                                unit="chapter", disable=not progress):
        folder = os.path.dirname(transcript_file)
        for utt_id, words in read_transcripts(transcript_file).items():
            audio = os.path.join(folder, f"{utt_id}.flac")
            if not os.path.isfile(audio):
                raise PreparationError(f"{transcript_file} names {utt_id}, but {audio} does not exist")
            rows.append({
                "ID": utt_id,
                "duration": audio_duration(audio, 16000),
                "wav": os.path.abspath(audio),
                "spk_id": utt_id.split("-")[0],
                "phn": "",
                "wrd": words,
                "char": chars_of_words(words),
            })
    return rows


def prepare_librispeech(data_folder: str, save_folder: str,
                        parts: Optional[Mapping[str, Sequence[str]]] = None,
                        progress: bool = True) -> Dict[str, str]:
    """Write ``train.csv``, ``valid.csv`` and ``test.csv`` for LibriSpeech.

    Arguments
    ---------
    data_folder : str
        The folder holding the parts (or holding ``LibriSpeech/``).
    save_folder : str
        Where the manifests go.
    parts : mapping, optional
        Split -> LibriSpeech parts; a split not named keeps its :data:`DEFAULT_PARTS`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        Split name -> manifest path.

    Raises
    ------
    PreparationError
        Naming the missing part, file or malformed line.
    """
    if not os.path.isdir(data_folder):
        raise PreparationError(f"LibriSpeech data_folder {data_folder} does not exist")
    nested = os.path.join(data_folder, "LibriSpeech")
    if os.path.isdir(nested):
        data_folder = nested
    unknown = sorted(set(parts or {}) - set(DEFAULT_PARTS))
    if unknown:
        raise PreparationError(f"LibriSpeech parts name the split(s) {', '.join(unknown)}; the splits are "
                               f"{', '.join(DEFAULT_PARTS)}")
    parts = {split: tuple(names) for split, names in {**DEFAULT_PARTS, **(parts or {})}.items()}
    empty = [split for split, names in parts.items() if not names]
    if empty:
        raise PreparationError(f"LibriSpeech parts: no part for {', '.join(empty)}; name at least one each")
    for split, names in parts.items():
        for name in names:
            if not os.path.isdir(os.path.join(data_folder, name)):
                raise PreparationError(f"{data_folder} has no {name} folder (the {split} split); unpack it there "
                                       "or name other parts")
    manifests = manifest_paths(save_folder)
    options = {"corpus": "librispeech", "data_folder": os.path.abspath(data_folder),
               "parts": {split: list(names) for split, names in parts.items()}}
    if already_prepared(save_folder, options):
        logger.info("LibriSpeech manifests in %s are up to date, skipping", save_folder)
        return manifests
    start_preparation(save_folder, options)
    for split, names in parts.items():
        rows = [row for name in names for row in _part_rows(os.path.join(data_folder, name), progress)]
        write_prepared_manifest(save_folder, manifests[split], rows)
        logger.info("LibriSpeech %s: %d utterances (%s)", split, len(rows), ", ".join(names))
    finish_preparation(save_folder, options)
    return manifests


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point."""
    preparation_main(prepare_librispeech, "LibriSpeech", "the folder holding train-clean-100, dev-clean, test-clean",
                     argv)


if __name__ == "__main__":
    main()
