import os

import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.common import PreparationError
from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.data.validation import validate_manifest
from hieradist_lobes.data.phones import PHONES_39
from hieradist_lobes.data.timit import CORE_TEST_SPEAKERS, DEV_SPEAKERS, prepare_timit

PHONES = [("h#", 0, 2000), ("dh", 2000, 2400), ("ix", 2400, 2800), ("q", 2800, 2900), ("kcl", 2900, 3000),
          ("k", 3000, 3200), ("ae", 3200, 3800), ("tcl", 3800, 3900), ("pau", 3900, 4000), ("h#", 4000, 4800)]
WORDS = [("the", 2000, 2800), ("cat", 2900, 3900)]


def _write_utterance(folder, stem, lower=False, nist=True):
    name = stem.lower() if lower else stem
    audio = np.random.default_rng(0).normal(0, 0.1, 4800).astype(np.float32)
    if nist:
        soundfile.write(os.path.join(folder, name + (".wav" if lower else ".WAV")), audio, 16000,
                        format="NIST", subtype="PCM_16")
    else:
        soundfile.write(os.path.join(folder, name + ".WAV.wav"), audio, 16000, subtype="PCM_16")
    with open(os.path.join(folder, name + (".phn" if lower else ".PHN")), "w") as handle:
        handle.writelines(f"{start} {end} {phone}\n" for phone, start, end in PHONES)
    with open(os.path.join(folder, name + (".wrd" if lower else ".WRD")), "w") as handle:
        handle.writelines(f"{start} {end} {word}\n" for word, start, end in WORDS)


def make_fake_timit(root, lower=False, nist=True, train_speakers=("FCJF0", "MDAC0")):
    """A TIMIT tree with every dev/core-test speaker, 3 sentences each (SA1, SI, SX)."""
    layout = {"TRAIN": {speaker: "DR1" for speaker in train_speakers}, "TEST": {}}
    for index, speaker in enumerate(DEV_SPEAKERS + CORE_TEST_SPEAKERS + ("MZZZ9",)):
        layout["TEST"][speaker] = f"DR{index % 8 + 1}"
    for part, speakers in layout.items():
        for speaker, region in speakers.items():
            names = [part, region, speaker]
            folder = os.path.join(root, *[n.lower() for n in names] if lower else names)
            os.makedirs(folder, exist_ok=True)
            for stem in ("SA1", "SI1027", "SX127"):
                _write_utterance(folder, stem, lower=lower, nist=nist)
    return root


@pytest.fixture(scope="module")
def timit(tmp_path_factory):
    return make_fake_timit(str(tmp_path_factory.mktemp("TIMIT")))


def test_splits_and_labels(timit, tmp_path):
    manifests = prepare_timit(timit, str(tmp_path), progress=False)
    rows = {split: validate_manifest(path) for split, path in manifests.items()}
    assert len(rows["train"]) == 2 * 2  # SA excluded
    assert {row["spk_id"] for row in rows["valid"]} == set(DEV_SPEAKERS)
    assert {row["spk_id"] for row in rows["test"]} == set(CORE_TEST_SPEAKERS)
    # The extra TEST speaker belongs to no split.
    assert all(row["spk_id"] != "MZZZ9" for split_rows in rows.values() for row in split_rows)
    assert not any("_SA" in row["ID"] for split_rows in rows.values() for row in split_rows)
    row = rows["test"][0]
    # 61 -> 39: ix -> ih, q dropped, closures -> sil, consecutive sil merged.
    assert row["phn"] == "sil dh ih sil k ae sil"
    assert set(row["phn"].split()) <= set(PHONES_39)
    assert row["wrd"] == "THE CAT" and row["char"] == "T H E _ C A T"
    assert float(row["duration"]) == pytest.approx(0.3)
    assert row["ID"] == f"{row['spk_id']}_SI1027"


def test_lower_case_converted_copy(tmp_path):
    root = make_fake_timit(str(tmp_path / "timit"), lower=True, nist=False)
    manifests = prepare_timit(root, str(tmp_path / "out"), progress=False)
    assert len(read_manifest(manifests["valid"])) == 2 * len(DEV_SPEAKERS)
    assert read_manifest(manifests["train"])[0]["wav"].endswith(".WAV.wav")


def test_parent_folder_is_accepted(tmp_path):
    make_fake_timit(str(tmp_path / "corpora" / "TIMIT"))
    manifests = prepare_timit(str(tmp_path / "corpora"), str(tmp_path / "out"), progress=False)
    assert len(read_manifest(manifests["test"])) == 2 * len(CORE_TEST_SPEAKERS)


def test_skipped_when_done(timit, tmp_path):
    manifests = prepare_timit(timit, str(tmp_path), progress=False)
    stamp = os.stat(manifests["train"]).st_mtime_ns
    prepare_timit(timit, str(tmp_path), progress=False)
    assert os.stat(manifests["train"]).st_mtime_ns == stamp


def _speaker_folder(root, speaker):
    for dirpath, dirnames, _ in os.walk(root):
        if speaker in dirnames:
            return os.path.join(dirpath, speaker)
    raise AssertionError(speaker)


def test_missing_word_file_is_named(tmp_path):
    root = make_fake_timit(str(tmp_path / "timit"))
    os.remove(os.path.join(_speaker_folder(root, "FCJF0"), "SX127.WRD"))
    with pytest.raises(PreparationError, match="SX127.WRD"):
        prepare_timit(root, str(tmp_path / "out"), progress=False)


def test_malformed_phone_file_is_named(tmp_path):
    root = make_fake_timit(str(tmp_path / "timit"))
    path = os.path.join(_speaker_folder(root, "MDAC0"), "SI1027.PHN")
    with open(path, "a") as handle:
        handle.write("4800 dh\n")
    with pytest.raises(PreparationError, match=r"SI1027.PHN, line 11"):
        prepare_timit(root, str(tmp_path / "out"), progress=False)


def test_unknown_phone_is_named(tmp_path):
    root = make_fake_timit(str(tmp_path / "timit"))
    path = os.path.join(_speaker_folder(root, "MDAC0"), "SX127.PHN")
    with open(path, "a") as handle:
        handle.write("4800 4900 zz\n")
    with pytest.raises(PreparationError, match="SX127.PHN: unknown TIMIT phone.*zz"):
        prepare_timit(root, str(tmp_path / "out"), progress=False)


def test_missing_audio_and_core_speaker(tmp_path):
    root = make_fake_timit(str(tmp_path / "timit"))
    os.remove(os.path.join(_speaker_folder(root, "FCJF0"), "SI1027.WAV"))
    with pytest.raises(PreparationError, match="SI1027.WAV"):
        prepare_timit(root, str(tmp_path / "out"), progress=False)
    root = make_fake_timit(str(tmp_path / "timit2"))
    import shutil

    shutil.rmtree(_speaker_folder(root, "MDAB0"))
    with pytest.raises(PreparationError, match="lacks the test speaker.*MDAB0"):
        prepare_timit(root, str(tmp_path / "out2"), progress=False)


def test_not_a_timit_folder(tmp_path):
    with pytest.raises(PreparationError, match="does not exist"):
        prepare_timit(str(tmp_path / "nothing"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreparationError, match="no TRAIN folder"):
        prepare_timit(str(tmp_path / "empty"), str(tmp_path / "out"))
