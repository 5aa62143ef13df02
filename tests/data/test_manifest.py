import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.manifest import (
    ManifestError,
    chars_of_words,
    read_manifest,
    validate_manifest,
    write_manifest,
)


def _row(tmp_path, utt="u1", seconds=0.5, rate=16000, **overrides):
    wav = tmp_path / f"{utt}.wav"
    soundfile.write(wav, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    row = {"ID": utt, "duration": seconds, "wav": str(wav), "spk_id": "s1", "phn": "k ae t", "wrd": "CAT",
           "char": "C A T"}
    row.update(overrides)
    return row


def test_round_trip(tmp_path):
    path = tmp_path / "m.csv"
    write_manifest(str(path), [_row(tmp_path), _row(tmp_path, "u2", 1.25)])
    rows = validate_manifest(str(path))
    assert [row["ID"] for row in rows] == ["u1", "u2"]
    assert float(rows[1]["duration"]) == 1.25


def test_chars_of_words():
    assert chars_of_words("A CAT") == "A _ C A T"
    assert chars_of_words("大 家好", word_separator=None) == "大 家 好"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"phn": " "}, "utterance 'u1': empty phn"),
        ({"duration": 0.9}, "duration 0.9 s in the manifest"),
        ({"duration": "abc"}, "is not a number"),
        ({"wav": "/nonexistent.wav"}, "does not exist"),
    ],
)
def test_bad_rows_are_named(tmp_path, overrides, message):
    path = tmp_path / "m.csv"
    write_manifest(str(path), [_row(tmp_path, **overrides)])
    with pytest.raises(ManifestError, match=message) as error:
        validate_manifest(str(path))
    assert str(path) in str(error.value) and "line 2" in str(error.value)


def test_wrong_sample_rate(tmp_path):
    path = tmp_path / "m.csv"
    write_manifest(str(path), [_row(tmp_path, rate=8000)])
    with pytest.raises(ManifestError, match="8000 Hz, expected 16000 Hz"):
        validate_manifest(str(path))


def test_missing_column_and_duplicate_id(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("ID,duration,wav\nu1,1.0,/a.wav\n")
    with pytest.raises(ManifestError, match="lacks the column"):
        read_manifest(str(path))
    write_manifest(str(path), [_row(tmp_path), _row(tmp_path)])
    with pytest.raises(ManifestError, match="appears twice"):
        read_manifest(str(path))
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path / "absent.csv"))
