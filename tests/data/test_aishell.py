import os
import tarfile

import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.aishell import prepare_aishell1, read_transcripts, words_to_phones
from hieradist_lobes.data.common import PreparationError
from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.data.validation import validate_manifest

SPEAKERS = {"train": ["S0002", "S0003"], "dev": ["S0724"], "test": ["S0764"]}
TRANSCRIPT_WORDS = ["而 对 楼市", "成交 抑制", "作用 最 大"]
LEXICON = "而 er2\n对 d ui4\n楼市 l ou2 sh ix4\n成交 ch eng2 j iao1\n抑 ii i4\n制 zh iy4\n作用 z uo4 ii iong4\n最 z ui4\n"


def make_fake_aishell(root, archives=True, lexicon=True, untranscribed=True):
    """The AISHELL-1 layout: per-speaker tarballs, transcript, optional lexicon."""
    corpus = os.path.join(root, "data_aishell")
    wav_folder = os.path.join(corpus, "wav")
    os.makedirs(os.path.join(corpus, "transcript"))
    os.makedirs(wav_folder)
    lines = []
    staging = os.path.join(root, "staging")
    for split, speakers in SPEAKERS.items():
        for speaker in speakers:
            folder = os.path.join(staging, split, speaker)
            os.makedirs(folder)
            for index, words in enumerate(TRANSCRIPT_WORDS):
                utt = f"BAC009{speaker}W{index:04d}"
                soundfile.write(os.path.join(folder, utt + ".wav"), np.zeros(8000 + 1600 * index, np.int16), 16000)
                lines.append(f"{utt} {words}\n")
            if untranscribed:
                soundfile.write(os.path.join(folder, f"BAC009{speaker}W9999.wav"), np.zeros(800, np.int16), 16000)
            if archives:
                with tarfile.open(os.path.join(wav_folder, f"{speaker}.tar.gz"), "w:gz") as handle:
                    handle.add(folder, arcname=f"{split}/{speaker}")
    if not archives:
        for split in SPEAKERS:
            os.rename(os.path.join(staging, split), os.path.join(wav_folder, split))
    with open(os.path.join(corpus, "transcript", "aishell_transcript_v0.8.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    if lexicon:
        os.makedirs(os.path.join(root, "resource_aishell"))
        with open(os.path.join(root, "resource_aishell", "lexicon.txt"), "w", encoding="utf-8") as handle:
            handle.write(LEXICON)
    return root


def test_archives_unpacked_and_official_split_kept(tmp_path):
    root = make_fake_aishell(str(tmp_path / "aishell"))
    manifests = prepare_aishell1(root, str(tmp_path / "out"), progress=False)
    rows = {split: validate_manifest(path, require=("wrd", "char")) for split, path in manifests.items()}
    assert {row["spk_id"] for row in rows["train"]} == {"S0002", "S0003"}
    assert {row["spk_id"] for row in rows["valid"]} == {"S0724"}
    assert {row["spk_id"] for row in rows["test"]} == {"S0764"}
    # The utterance without transcript is skipped.
    assert len(rows["train"]) == 6 and all("W9999" not in row["ID"] for row in rows["train"])
    first = rows["test"][0]
    assert first["ID"] == "BAC009S0764W0000"
    assert first["wrd"] == "而 对 楼市" and first["char"] == "而 对 楼 市"
    assert first["phn"] == "er2 d ui4 l ou2 sh ix4"
    assert float(first["duration"]) == pytest.approx(0.5)
    # Word missing from the lexicon falls back to characters; "大" is unknown.
    third = rows["test"][2]
    assert third["phn"] == "z uo4 ii iong4 z ui4 <unk>"


def test_already_unpacked_folder_without_lexicon(tmp_path):
    root = make_fake_aishell(str(tmp_path / "aishell"), archives=False, lexicon=False)
    manifests = prepare_aishell1(os.path.join(root, "data_aishell"), str(tmp_path / "out"), progress=False)
    rows = read_manifest(manifests["valid"])
    assert len(rows) == 3 and all(row["phn"] == "" for row in rows)


def test_missing_transcript_is_named(tmp_path):
    root = make_fake_aishell(str(tmp_path / "aishell"))
    os.remove(os.path.join(root, "data_aishell", "transcript", "aishell_transcript_v0.8.txt"))
    with pytest.raises(PreparationError, match="aishell_transcript_v0.8.txt does not exist"):
        prepare_aishell1(root, str(tmp_path / "out"), progress=False)


def test_malformed_transcript_line_is_named(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("BAC009S0002W0000 而 对\nBAC009S0002W0001\n", encoding="utf-8")
    with pytest.raises(PreparationError, match="line 2: utterance BAC009S0002W0001 has no text"):
        read_transcripts(str(path))
    path.write_text("U1 而\nU1 对\n", encoding="utf-8")
    with pytest.raises(PreparationError, match="U1 appears twice"):
        read_transcripts(str(path))


def test_missing_split_and_corrupt_archive(tmp_path):
    root = make_fake_aishell(str(tmp_path / "aishell"), archives=False)
    import shutil

    shutil.rmtree(os.path.join(root, "data_aishell", "wav", "dev"))
    with pytest.raises(PreparationError, match=r"wav/dev does not exist"):
        prepare_aishell1(root, str(tmp_path / "out"), progress=False)
    root = make_fake_aishell(str(tmp_path / "aishell2"))
    with open(os.path.join(root, "data_aishell", "wav", "S0002.tar.gz"), "wb") as handle:
        handle.write(b"not a tarball")
    with pytest.raises(PreparationError, match="cannot unpack .*S0002.tar.gz"):
        prepare_aishell1(root, str(tmp_path / "out2"), progress=False)


def test_words_to_phones_prefers_whole_words():
    assert words_to_phones("楼市", {"楼市": ["l", "ou2", "sh", "ix4"], "楼": ["x"]}) == ["l", "ou2", "sh", "ix4"]
