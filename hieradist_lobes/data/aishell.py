"""AISHELL-1 preparation (OpenSLR 33) to the project's manifest schema.

Expected layout (``data_folder`` is the folder holding ``data_aishell``, or
``data_aishell`` itself)::

    data_aishell/wav/{train,dev,test}/<speaker>/<utterance>.wav
    data_aishell/transcript/aishell_transcript_v0.8.txt
    resource_aishell/lexicon.txt                      (optional, for phn)

As distributed, ``data_aishell/wav`` holds one ``<speaker>.tar.gz`` per
speaker; they are unpacked in place on first use.  The official split is
kept (``dev`` becomes ``valid``).  Utterances without a transcript (the
release has a few hundred) are skipped and counted in the log.

Columns: ``wrd`` is the official word-segmented transcript, ``char`` its
characters (no word separator), ``phn`` the pinyin initials and finals of the
lexicon (a word missing from it is looked up character by character, and a
character missing too becomes ``<unk>``); without a lexicon ``phn`` is empty.

Usage::

    python -m hieradist_lobes.data.aishell --data_folder /corpora/aishell --save_folder data/aishell
"""

from __future__ import annotations

import glob
import logging
import os
import tarfile
from typing import Dict, List, Optional, Sequence

from hieradist_lobes.data.common import (
    PreparationError,
    already_prepared,
    preparation_main,
    audio_duration,
    manifest_paths,
    finish_preparation,
    start_preparation,
    write_prepared_manifest,
)
from hieradist_lobes.data.manifest import chars_of_words

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {"train": "train", "valid": "dev", "test": "test"}
TRANSCRIPT = os.path.join("transcript", "aishell_transcript_v0.8.txt")
UNKNOWN_PHONE = "<unk>"


def read_transcripts(path: str) -> Dict[str, str]:
    """Utterance ID -> space-separated words, from the official transcript file.

    Raises
    ------
    PreparationError
        If the file is missing, a line has no text, or an ID repeats.
    """
    if not os.path.isfile(path):
        raise PreparationError(f"AISHELL-1 transcript file {path} does not exist")
    transcripts: Dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise PreparationError(f"{path}, line {number}: utterance {fields[0]} has no text")
            if fields[0] in transcripts:
                raise PreparationError(f"{path}, line {number}: utterance {fields[0]} appears twice")
            transcripts[fields[0]] = " ".join(fields[1:])
    return transcripts


def read_lexicon(path: str) -> Dict[str, List[str]]:
    """Word -> phones of its first pronunciation, from ``lexicon.txt``."""
    lexicon: Dict[str, List[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise PreparationError(f"{path}, line {number}: word {fields[0]} has no pronunciation")
            lexicon.setdefault(fields[0], fields[1:])
    return lexicon


def words_to_phones(words: str, lexicon: Dict[str, List[str]]) -> List[str]:
    """Phones of ``words``: whole words first, then character by character.

    Example
    -------
    >>> lexicon = {"今天": ["j", "in1", "t", "ian1"], "好": ["h", "ao3"]}
    >>> words_to_phones("今天 很 好", lexicon)
    ['j', 'in1', 't', 'ian1', '<unk>', 'h', 'ao3']
    """
    phones: List[str] = []
    for word in words.split():
        if word in lexicon:
            phones.extend(lexicon[word])
        else:
            for char in word:
                phones.extend(lexicon.get(char, [UNKNOWN_PHONE]))
    return phones


def _unpack_speaker_archives(wav_folder: str, progress: bool) -> None:
    archives = sorted(glob.glob(os.path.join(wav_folder, "*.tar.gz")))
    if not archives:
        return
    from tqdm import tqdm

    for archive in tqdm(archives, desc="unpacking AISHELL-1", unit="spk", disable=not progress):
        marker = archive + ".unpacked"
        if os.path.exists(marker):
            continue
        try:
            with tarfile.open(archive) as handle:
                handle.extractall(wav_folder, filter="data")
        except tarfile.TarError as error:
            raise PreparationError(f"cannot unpack {archive}: {error}") from error
        open(marker, "w").close()


def prepare_aishell1(data_folder: str, save_folder: str, progress: bool = True) -> Dict[str, str]:
    """Write ``train.csv``, ``valid.csv`` and ``test.csv`` for AISHELL-1.

    Arguments
    ---------
    data_folder : str
        Folder holding ``data_aishell`` (and optionally ``resource_aishell``),
        or ``data_aishell`` itself.
    save_folder : str
        Where the manifests go.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        Split name -> manifest path.

    Raises
    ------
    PreparationError
        Naming the missing or malformed file.
    """
    if not os.path.isdir(data_folder):
        raise PreparationError(f"AISHELL-1 data_folder {data_folder} does not exist")
    corpus = os.path.join(data_folder, "data_aishell")
    if not os.path.isdir(corpus):
        corpus = data_folder
    wav_folder = os.path.join(corpus, "wav")
    if not os.path.isdir(wav_folder):
        raise PreparationError(f"{wav_folder} does not exist; is {data_folder} the AISHELL-1 corpus?")
    lexicon_path = os.path.join(os.path.dirname(os.path.abspath(corpus)), "resource_aishell", "lexicon.txt")
    has_lexicon = os.path.isfile(lexicon_path)

    manifests = manifest_paths(save_folder)
    options = {"corpus": "aishell1", "data_folder": os.path.abspath(corpus), "lexicon": has_lexicon}
    if already_prepared(save_folder, options):
        logger.info("AISHELL-1 manifests in %s are up to date, skipping", save_folder)
        return manifests
    start_preparation(save_folder, options)

    transcripts = read_transcripts(os.path.join(corpus, TRANSCRIPT))
    lexicon = read_lexicon(lexicon_path) if has_lexicon else None
    if lexicon is None:
        logger.warning("no %s: the phn column will be empty", lexicon_path)
    _unpack_speaker_archives(wav_folder, progress)

    from tqdm import tqdm

    for split, folder_name in SPLIT_FOLDERS.items():
        split_folder = os.path.join(wav_folder, folder_name)
        if not os.path.isdir(split_folder):
            raise PreparationError(f"AISHELL-1 split folder {split_folder} does not exist")
        wavs = sorted(glob.glob(os.path.join(split_folder, "*", "*.wav")))
        if not wavs:
            raise PreparationError(f"AISHELL-1 split folder {split_folder} holds no <speaker>/*.wav files")
        rows = []
        untranscribed = 0
        unknown = 0
        for wav in tqdm(wavs, desc=f"AISHELL-1 {split}", unit="utt", disable=not progress):
            utt_id = os.path.splitext(os.path.basename(wav))[0]
            words = transcripts.get(utt_id)
            if words is None:
                untranscribed += 1
                continue
            phones = words_to_phones(words, lexicon) if lexicon is not None else []
            unknown += phones.count(UNKNOWN_PHONE)
            rows.append(
                {
                    "ID": utt_id,
                    "duration": audio_duration(wav, 16000),
                    "wav": os.path.abspath(wav),
                    "spk_id": os.path.basename(os.path.dirname(wav)),
                    "phn": " ".join(phones),
                    "wrd": words,
                    "char": chars_of_words(words, word_separator=None),
                }
            )
        if not rows:
            raise PreparationError(f"no utterance of {split_folder} has a transcript in {TRANSCRIPT}")
        write_prepared_manifest(save_folder, manifests[split], rows)
        logger.info(
            "AISHELL-1 %s: %d utterances, %d skipped without transcript, %d characters missing from the lexicon",
            split, len(rows), untranscribed, unknown,
        )
    finish_preparation(save_folder, options)
    return manifests


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point."""
    preparation_main(prepare_aishell1, "AISHELL-1", "folder holding data_aishell (and resource_aishell)", argv)


if __name__ == "__main__":
    main()
