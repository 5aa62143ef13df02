"""TIMIT preparation (LDC93S1) to the project's manifest schema.

The splits follow SpeechBrain's and Kaldi's TIMIT recipes:

* ``train``: every SI and SX sentence of ``TRAIN`` (462 speakers);
* ``valid``: the SI and SX sentences of the 50 development speakers of
  :data:`DEV_SPEAKERS`, taken from ``TEST``;
* ``test``: the SI and SX sentences of the 24-speaker core test set
  :data:`CORE_TEST_SPEAKERS`.

The SA dialect sentences, which every speaker reads, are excluded.  Phones are
folded from 61 to 39 (:func:`~hieradist_lobes.data.phones.fold_timit`;
consecutive ``sil`` merged into one), words are upper-cased.

Directory names may be upper or lower case.  The audio of each utterance is
``<UTT>.WAV`` (NIST SPHERE, read by libsndfile) or, in converted copies,
``<UTT>.WAV.wav`` or ``<UTT>.wav``.

Usage::

    python -m hieradist_lobes.data.timit --data_folder /corpora/TIMIT --save_folder data/timit

Example
-------
>>> len(DEV_SPEAKERS), len(CORE_TEST_SPEAKERS), set(DEV_SPEAKERS) & set(CORE_TEST_SPEAKERS)
(50, 24, set())
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

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
from hieradist_lobes.data.phones import TIMIT_61_TO_39, fold_timit

logger = logging.getLogger(__name__)

DEV_SPEAKERS: Tuple[str, ...] = (
    "FAKS0", "FDAC1", "FJEM0", "MGWT0", "MJAR0", "MMDB1", "MMDM2", "MPDF0", "FCMH0", "FKMS0",
    "MBDG0", "MBWM0", "MCSH0", "FADG0", "FDMS0", "FEDW0", "MGJF0", "MGLB0", "MRTK0", "MTAA0",
    "MTDT0", "MTHC0", "MWJG0", "FNMR0", "FREW0", "FSEM0", "MBNS0", "MMJR0", "MDLS0", "MDLF0",
    "MDVC0", "MERS0", "FMAH0", "FDRW0", "MRCS0", "MRJM4", "FCAL1", "MMWH0", "FJSJ0", "MAJC0",
    "MJSW0", "MREB0", "FGJD0", "FJMG0", "MROA0", "MTEB0", "MJFC0", "MRJR0", "FMML0", "MRWS1",
)

CORE_TEST_SPEAKERS: Tuple[str, ...] = (
    "MDAB0", "MWBT0", "FELC0", "MTAS1", "MWEW0", "FPAS0", "MJMP0", "MLNT0", "FPKT0", "MLLL0",
    "MTLS0", "FJLM0", "MBPM0", "MKLT0", "FNLP0", "MCMJ0", "MJDH0", "FMGD0", "MGRT0", "MNJM0",
    "FDHC0", "MJLN0", "MPAM0", "FMLD0",
)

SAMPLE_RATE = 16000


def _child(folder: str, name: str) -> Optional[str]:
    """The entry of ``folder`` called ``name``, whatever its case."""
    for entry in os.listdir(folder):
        if entry.upper() == name.upper():
            return os.path.join(folder, entry)
    return None


def _speaker_folders(part_folder: str) -> Dict[str, str]:
    """Speaker ID (upper case) -> folder, across the dialect regions."""
    speakers = {}
    for region in sorted(os.listdir(part_folder)):
        region_path = os.path.join(part_folder, region)
        if not (os.path.isdir(region_path) and region.upper().startswith("DR")):
            continue
        for speaker in sorted(os.listdir(region_path)):
            if os.path.isdir(os.path.join(region_path, speaker)):
                speakers[speaker.upper()] = os.path.join(region_path, speaker)
    return speakers


def _read_labels(path: str) -> List[str]:
    """Third column of a TIMIT ``.PHN`` or ``.WRD`` file, checking each line."""
    labels = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
                raise PreparationError(f"{path}, line {number}: expected 'start end label', got {line.strip()!r}")
            labels.append(fields[2])
    if not labels:
        raise PreparationError(f"{path} is empty")
    return labels


def _audio_file(speaker_folder: str, utterance: str) -> Optional[str]:
    for suffix in (".WAV.wav", ".wav", ".WAV"):
        for name in (utterance + suffix, utterance.lower() + suffix):
            path = os.path.join(speaker_folder, name)
            if os.path.isfile(path):
                return path
    return None


def _utterances(speaker: str, speaker_folder: str) -> List[Dict[str, object]]:
    """Manifest rows of one speaker's SI and SX sentences."""
    rows = []
    stems = sorted({entry.split(".")[0].upper() for entry in os.listdir(speaker_folder) if entry.upper().endswith(".PHN")})
    for stem in stems:
        if stem.startswith("SA"):
            continue
        phn_path = _child(speaker_folder, stem + ".PHN")
        wrd_path = _child(speaker_folder, stem + ".WRD")
        if wrd_path is None:
            raise PreparationError(f"{phn_path} has no matching word file {stem}.WRD in {speaker_folder}")
        audio = _audio_file(speaker_folder, stem)
        if audio is None:
            raise PreparationError(f"{phn_path} has no matching audio file {stem}.WAV in {speaker_folder}")
        phones61 = _read_labels(phn_path)
        unknown = [phone for phone in phones61 if phone not in TIMIT_61_TO_39]
        if unknown:
            raise PreparationError(f"{phn_path}: unknown TIMIT phone(s) {', '.join(sorted(set(unknown)))}")
        phones: List[str] = []
        for phone in fold_timit(phones61):
            if not (phone == "sil" and phones and phones[-1] == "sil"):
                phones.append(phone)
        words = " ".join(_read_labels(wrd_path)).upper()
        rows.append(
            {
                "ID": f"{speaker}_{stem}",
                "duration": audio_duration(audio, SAMPLE_RATE),
                "wav": os.path.abspath(audio),
                "spk_id": speaker,
                "phn": " ".join(phones),
                "wrd": words,
                "char": chars_of_words(words),
            }
        )
    return rows


def prepare_timit(data_folder: str, save_folder: str, progress: bool = True) -> Dict[str, str]:
    """Write ``train.csv``, ``valid.csv`` and ``test.csv`` for TIMIT.

    Arguments
    ---------
    data_folder : str
        The TIMIT folder holding ``TRAIN`` and ``TEST`` (or its parent
        holding ``TIMIT``).
    save_folder : str
        Where the manifests go.
    progress : bool
        Show a progress bar over speakers.

    Returns
    -------
    dict
        Split name -> manifest path.

    Raises
    ------
    PreparationError
        Naming the missing or malformed file or speaker.
    """
    if not os.path.isdir(data_folder):
        raise PreparationError(f"TIMIT data_folder {data_folder} does not exist")
    nested = _child(data_folder, "TIMIT")
    if nested and os.path.isdir(nested) and _child(data_folder, "TRAIN") is None:
        data_folder = nested
    train_folder, test_folder = _child(data_folder, "TRAIN"), _child(data_folder, "TEST")
    for name, folder in (("TRAIN", train_folder), ("TEST", test_folder)):
        if folder is None or not os.path.isdir(folder):
            raise PreparationError(f"{data_folder} has no {name} folder; is it the TIMIT corpus?")

    manifests = manifest_paths(save_folder)
    options = {"corpus": "timit", "data_folder": os.path.abspath(data_folder), "phones": 39}
    if already_prepared(save_folder, options):
        logger.info("TIMIT manifests in %s are up to date, skipping", save_folder)
        return manifests
    start_preparation(save_folder, options)

    train_speakers = _speaker_folders(train_folder)
    test_speakers = _speaker_folders(test_folder)
    if not train_speakers:
        raise PreparationError(f"{train_folder} holds no speaker folders (DR*/<speaker>)")
    split_speakers = {
        "train": [(speaker, train_speakers[speaker]) for speaker in sorted(train_speakers)],
        "valid": [],
        "test": [],
    }
    for split, wanted in (("valid", DEV_SPEAKERS), ("test", CORE_TEST_SPEAKERS)):
        missing = [speaker for speaker in wanted if speaker not in test_speakers]
        if missing:
            raise PreparationError(f"{test_folder} lacks the {split} speaker(s) {', '.join(missing)}")
        split_speakers[split] = [(speaker, test_speakers[speaker]) for speaker in wanted]

    from tqdm import tqdm

    total = sum(len(speakers) for speakers in split_speakers.values())
    with tqdm(total=total, desc="preparing TIMIT", unit="spk", disable=not progress) as bar:
        for split, speakers in split_speakers.items():
            rows = []
            for speaker, folder in speakers:
                rows.extend(_utterances(speaker, folder))
                bar.update()
            if not rows:
                raise PreparationError(f"no SI/SX utterances found for the TIMIT {split} split")
            write_prepared_manifest(save_folder, manifests[split], rows)
            logger.info("TIMIT %s: %d utterances", split, len(rows))
    finish_preparation(save_folder, options)
    return manifests


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point."""
    preparation_main(prepare_timit, "TIMIT", "the TIMIT folder (holding TRAIN and TEST)", argv)


if __name__ == "__main__":
    main()
