"""Manifest checks before the first step: every problem named, together, cached, or dropped and counted."""

import os

import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.manifest import ManifestError, read_manifest, write_manifest
from hieradist_lobes.data.validation import (
    ManifestCheckError,
    check_manifest,
    label_check,
    validate_manifest,
    validated_manifest,
)
from hieradist_lobes.tokens import build_label_encoder

FIELDS = ["ID", "duration", "wav", "phn"]


def _wav(folder, name, seconds=0.5, rate=16000, channels=1):
    path = os.path.join(folder, name)
    samples = np.random.default_rng(0).normal(0, 0.1, (int(seconds * rate), channels)).astype(np.float32)
    soundfile.write(path, samples if channels > 1 else samples[:, 0], rate)
    return path


def _good(folder, utt, seconds=0.5, phones="k ae t"):
    return {"ID": utt, "duration": seconds, "wav": _wav(folder, f"{utt}.wav", seconds), "phn": phones}


def _bad_manifest(tmp_path):
    """One good row, then one row per class of problem."""
    folder = str(tmp_path)
    truncated = _wav(folder, "truncated.wav", 2.65)
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 3])
    corrupt = os.path.join(folder, "corrupt.wav")
    open(corrupt, "wb").write(b"RIFF" + bytes(200))
    rows = [
        _good(folder, "ok"),
        {"ID": "trunc", "duration": 2.65, "wav": truncated, "phn": "k ae t"},
        {"ID": "rate8k", "duration": 0.5, "wav": _wav(folder, "r8.wav", 0.5, 8000), "phn": "k ae t"},
        {"ID": "stereo", "duration": 0.5, "wav": _wav(folder, "st.wav", 0.5, channels=2), "phn": "k ae t"},
        {"ID": "corrupt", "duration": 0.5, "wav": corrupt, "phn": "k ae t"},
        {"ID": "missing", "duration": 0.5, "wav": os.path.join(folder, "nope.wav"), "phn": "k ae t"},
        {**_good(folder, "empty"), "phn": "  "},
        {**_good(folder, "oov"), "phn": "k zz t"},
        {**_good(folder, "ok"), "ID": "ok"},  # duplicate ID
        {**_good(folder, "baddur"), "duration": "abc"},
    ]
    path = os.path.join(folder, "train.csv")
    write_manifest(path, rows, FIELDS)
    return path


def test_every_problem_is_named_with_manifest_line_and_utterance(tmp_path):
    path = _bad_manifest(tmp_path)
    check = label_check(build_label_encoder("phn", "phones39"))
    result = check_manifest(path, "phn", check)
    messages = {problem.utt_id: (problem.line, problem.message) for problem in result.problems}
    assert [row["ID"] for row in result.rows] == ["ok"]
    assert messages["trunc"][0] == 3 and "2.65 s in the manifest but 0.88" in messages["trunc"][1]
    assert "8000 Hz, the model expects 16000 Hz" in messages["rate8k"][1]
    assert "2 channels" in messages["stereo"][1]
    assert "cannot open" in messages["corrupt"][1]
    assert "does not exist" in messages["missing"][1]
    assert "phn: empty transcript" in messages["empty"][1]
    assert "not in the vocabulary: 'zz'" in messages["oov"][1]
    assert messages["ok"] == (10, "ID also on line 2; IDs must be unique")
    assert "not a positive number" in messages["baddur"][1]
    assert all(str(problem).startswith(f"manifest {path}, line ") for problem in result.problems)


def test_all_problems_reported_together_then_cached_or_dropped(tmp_path):
    path = _bad_manifest(tmp_path)
    cache = str(tmp_path / "checks")
    check = label_check(build_label_encoder("phn", "phones39"))
    with pytest.raises(ManifestCheckError) as caught:
        validated_manifest(path, "phn", cache, check, progress=False)
    message = str(caught.value)
    assert "9 bad row(s)" in message and "line 3" in message and "line 11" in message
    assert "bad_rows: drop" in message
    report = [name for name in os.listdir(cache) if name.endswith(".problems.txt")]
    assert len(open(os.path.join(cache, report[0])).read().splitlines()) == 9

    used = validated_manifest(path, "phn", cache, check, bad_rows="drop", progress=False)
    assert used != path and [row["ID"] for row in read_manifest(used)] == ["ok"]
    # Cached by the manifest's and its audio files' size and mtime: a second call reads no audio.
    import hieradist_lobes.data.validation as validation

    real_info = validation._audio_info
    validation._audio_info = lambda wav: pytest.fail(f"{wav} read again although nothing changed")
    try:
        assert validated_manifest(path, "phn", cache, check, bad_rows="drop", progress=False) == used
    finally:
        validation._audio_info = real_info


def test_a_cached_check_is_redone_when_an_audio_file_changes(tmp_path):
    """The cache vouches for the audio: a wav replaced at another rate after a clean check is found."""
    folder = str(tmp_path)
    rows = [_good(folder, "a"), _good(folder, "b")]
    path = os.path.join(folder, "m.csv")
    write_manifest(path, rows, FIELDS)
    cache = str(tmp_path / "checks")
    assert validated_manifest(path, "phn", cache, progress=False) == path
    manifest_stat = os.stat(path)
    _wav(folder, "b.wav", 0.5, rate=8000)  # the same name, the manifest untouched
    assert os.stat(path).st_mtime_ns == manifest_stat.st_mtime_ns
    with pytest.raises(ManifestCheckError, match="line 3, utterance 'b': .*b.wav is 8000 Hz"):
        validated_manifest(path, "phn", cache, progress=False)


def test_non_finite_samples_of_a_float_wav_are_found_by_the_check(tmp_path):
    folder = str(tmp_path)
    samples = np.zeros(8000, dtype=np.float32)
    samples[4000] = np.nan
    samples[4001] = np.inf
    soundfile.write(os.path.join(folder, "nan.wav"), samples, 16000, subtype="FLOAT")
    rows = [_good(folder, "ok"), {"ID": "nan", "duration": 0.5, "wav": os.path.join(folder, "nan.wav"), "phn": "k"}]
    path = os.path.join(folder, "m.csv")
    write_manifest(path, rows, FIELDS)
    result = check_manifest(path, "phn")
    assert [(p.utt_id, p.line) for p in result.problems] == [("nan", 3)]
    assert "nan.wav holds 2 non-finite sample(s) (NaN or inf)" in result.problems[0].message


def test_resample_and_mix_down_are_explicit_choices(tmp_path):
    folder = str(tmp_path)
    rows = [{"ID": "a", "duration": 0.5, "wav": _wav(folder, "a.wav", 0.5, 8000), "phn": "k"},
            {"ID": "b", "duration": 0.5, "wav": _wav(folder, "b.wav", 0.5, channels=2), "phn": "k"}]
    path = os.path.join(folder, "m.csv")
    write_manifest(path, rows, FIELDS)
    assert len(check_manifest(path, "phn").problems) == 2
    assert check_manifest(path, "phn", resample=True, mix_down=True).problems == []


def test_missing_columns_name_the_manifest(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("ID,wav\nu1,/a.wav\n")
    with pytest.raises(ManifestCheckError, match=f"manifest {path}, line 1: no column duration, phn"):
        check_manifest(str(path), "phn")
    with pytest.raises(ManifestError, match="does not exist"):
        check_manifest(str(tmp_path / "absent.csv"), "phn")


def test_a_clean_manifest_is_used_as_is(tmp_path):
    path = os.path.join(str(tmp_path), "m.csv")
    write_manifest(path, [_good(str(tmp_path), "u1"), _good(str(tmp_path), "u2", 1.25)], FIELDS)
    assert validated_manifest(path, "phn", str(tmp_path / "c"), progress=False) == path
    rows = validate_manifest(path, require=("phn",))
    assert [row["ID"] for row in rows] == ["u1", "u2"]


def test_an_empty_manifest_or_one_with_only_bad_rows_stops(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("ID,duration,wav,phn\n")
    with pytest.raises(ManifestCheckError, match=f"manifest {path} has no rows"):
        check_manifest(str(path), "phn")
    path.write_text(f"ID,duration,wav,phn\nu1,1.0,{tmp_path}/absent.wav,k\n")
    with pytest.raises(ManifestCheckError, match=f"every row of manifest {path} is bad"):
        validated_manifest(str(path), "phn", str(tmp_path / "c"), bad_rows="drop", progress=False)


def test_data_root_in_wav_paths_stands_for_the_data_folder(tmp_path):
    from hieradist_lobes.data.pipelines import read_signal

    _wav(str(tmp_path), "a.wav")
    path = tmp_path / "m.csv"
    path.write_text("ID,duration,wav,phn\nu1,0.5,$data_root/a.wav,k ae t\n")
    assert "does not exist" in check_manifest(str(path), "phn").problems[0].message
    assert check_manifest(str(path), "phn", data_root=str(tmp_path)).problems == []
    assert read_signal("u1", "$data_root/a.wav", data_root=str(tmp_path)).shape[0] == 8000


def test_a_vocabulary_that_fits_no_row_says_so(tmp_path):
    """A character model with the default phone set was told 'N bad rows: labels not in the vocabulary'."""
    from hieradist_lobes.data.validation import validated_manifest

    folder = str(tmp_path)
    rows = [{**_good(folder, f"u{index}"), "phn": "", "char": "C A T"} for index in range(3)]
    path = os.path.join(folder, "train.csv")
    write_manifest(path, rows, FIELDS + ["char"])
    check = label_check(build_label_encoder("phn", "phones39"))
    for bad_rows in ("error", "drop"):
        with pytest.raises(ManifestError, match="no row of manifest .*train.csv has its 'char' labels in the model's "
                                                "vocabulary .* Check unit and label_set"):
            validated_manifest(path, "char", str(tmp_path / f"checks_{bad_rows}"), check, "phones39", bad_rows,
                               progress=False)


def test_a_wav_path_that_is_a_folder_is_called_a_folder(tmp_path):
    """It was reported as 'does not exist'."""
    folder = str(tmp_path)
    path = os.path.join(folder, "train.csv")
    write_manifest(path, [_good(folder, "ok"), {"ID": "dir", "duration": 0.5, "wav": folder, "phn": "k ae t"}],
                   FIELDS)
    problems = check_manifest(path, "phn").problems
    assert [problem.utt_id for problem in problems] == ["dir"]
    assert f"audio path {folder} is a folder, not an audio file: give the wav file's path" in problems[0].message
