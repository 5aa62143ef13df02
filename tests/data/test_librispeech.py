"""LibriSpeech preparation on a fake tree in the real layout."""

import os

import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.common import PreparationError
from hieradist_lobes.data.librispeech import prepare_librispeech
from hieradist_lobes.data.validation import validate_manifest

PARTS = {"train-clean-100": ["19-198", "26-495"], "dev-clean": ["84-121123"], "test-clean": ["61-70968"]}


def _fake_librispeech(root):
    for part, chapters in PARTS.items():
        for chapter in chapters:
            speaker, book = chapter.split("-")
            folder = os.path.join(root, "LibriSpeech", part, speaker, book)
            os.makedirs(folder)
            lines = []
            for n in range(2):
                utt = f"{chapter}-{n:04d}"
                soundfile.write(os.path.join(folder, f"{utt}.flac"), np.zeros(8000 + 1600 * n, np.float32), 16000)
                lines.append(f"{utt} HELLO WORLD NUMBER {n}")
            with open(os.path.join(folder, f"{chapter}.trans.txt"), "w") as handle:
                handle.write("\n".join(lines) + "\n")
    return root


def test_default_parts_become_train_valid_test(tmp_path):
    root = _fake_librispeech(str(tmp_path / "corpus"))
    manifests = prepare_librispeech(root, str(tmp_path / "manifests"), progress=False)
    rows = {split: validate_manifest(path, require=("wrd", "char")) for split, path in manifests.items()}
    assert [len(rows[split]) for split in ("train", "valid", "test")] == [4, 2, 2]
    first = rows["train"][0]
    assert first["ID"] == "19-198-0000" and first["spk_id"] == "19" and first["wrd"] == "HELLO WORLD NUMBER 0"
    assert first["char"].startswith("H E L L O _ W") and first["wav"].endswith("19-198-0000.flac")
    assert float(rows["train"][1]["duration"]) == pytest.approx(0.6)
    # Up to date: a second call does not rewrite.
    before = os.path.getmtime(manifests["train"])
    prepare_librispeech(root, str(tmp_path / "manifests"), progress=False)
    assert os.path.getmtime(manifests["train"]) == before


def test_missing_part_and_bad_line_are_named(tmp_path):
    root = _fake_librispeech(str(tmp_path / "corpus"))
    with pytest.raises(PreparationError, match="no train-clean-360 folder"):
        prepare_librispeech(root, str(tmp_path / "m"), parts={"train": ["train-clean-360"], "valid": ["dev-clean"],
                                                               "test": ["test-clean"]})
    transcript = os.path.join(root, "LibriSpeech", "dev-clean", "84", "121123", "84-121123.trans.txt")
    with open(transcript, "a") as handle:
        handle.write("84-121123-0009\n")
    with pytest.raises(PreparationError, match=f"{transcript}, line 3: expected"):
        prepare_librispeech(root, str(tmp_path / "m"), progress=False)
