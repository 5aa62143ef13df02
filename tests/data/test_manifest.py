import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.manifest import MANIFEST_FIELDS, ManifestError, chars_of_words, read_manifest, write_manifest
from hieradist_lobes.data.validation import validate_manifest


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


def test_missing_column_and_duplicate_id(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("ID,duration,wav\nu1,1.0,/a.wav\n")
    with pytest.raises(ManifestError, match="lacks the column"):
        read_manifest(str(path), MANIFEST_FIELDS)
    assert read_manifest(str(path))[0]["ID"] == "u1"  # ID, duration, wav are all a reader needs
    write_manifest(str(path), [_row(tmp_path), _row(tmp_path)])
    with pytest.raises(ManifestError, match="appears twice"):
        read_manifest(str(path))
    assert len(read_manifest(str(path), unique_ids=False)) == 2
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path / "absent.csv"))


def test_spreadsheet_manifests_byte_order_mark_dollar_signs_and_bad_encoding(tmp_path):
    from hieradist_lobes.data.manifest import manifest_data

    path = tmp_path / "m.csv"
    path.write_text("ID,duration,wav,wrd\nu1,1.5,/a.wav,IT COST $5\n", encoding="utf-8-sig")
    assert read_manifest(str(path))[0]["ID"] == "u1"
    assert manifest_data(str(path)) == {"u1": {"duration": 1.5, "wav": "/a.wav", "wrd": "IT COST $5"}}
    path.write_bytes("ID,duration,wav,wrd\nu1,1.5,/a.wav,CAFÉ\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=f"manifest {path}, line 2: not UTF-8 text"):
        read_manifest(str(path))
