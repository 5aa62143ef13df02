"""Preparations never overwrite a manifest they did not write, or one edited since."""

import os

import pytest

from hieradist_lobes.data.common import PreparationError
from hieradist_lobes.data.manifest import read_manifest, write_manifest
from hieradist_lobes.data.synth import prepare_synth


@pytest.fixture
def made(tmp_path):
    folder = str(tmp_path / "synth")
    prepare_synth(folder, size="tiny", num_workers=2, progress=False)
    return folder


def test_a_users_edited_manifest_is_never_overwritten(made):
    train = os.path.join(made, "train.csv")
    rows = read_manifest(train)
    rows[0]["wrd"] = "MY CORRECTED TRANSCRIPT"
    os.remove(rows[1]["wav"])  # also fails the "already prepared" check: a re-synthesis would be due
    write_manifest(train, rows)
    edited = open(train).read()
    with pytest.raises(PreparationError, match=f"{train} was changed after the preparation wrote it"):
        prepare_synth(made, size="tiny", num_workers=2, progress=False)
    assert open(train).read() == edited


def test_a_manifest_without_a_record_is_never_overwritten(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "valid.csv").write_text("ID,duration,wav\nu1,1.0,/a.wav\n")
    with pytest.raises(PreparationError, match="valid.csv exists and was not written by a preparation"):
        prepare_synth(str(folder), size="tiny", num_workers=2, progress=False)
    assert (folder / "valid.csv").read_text() == "ID,duration,wav\nu1,1.0,/a.wav\n"


def test_its_own_manifests_are_remade_when_audio_is_missing(made):
    train = os.path.join(made, "train.csv")
    wav = read_manifest(train)[0]["wav"]
    os.remove(wav)
    prepare_synth(made, size="tiny", num_workers=2, progress=False)
    assert os.path.isfile(wav)


def test_a_folder_prepared_before_manifests_were_recorded_is_still_up_to_date(made):
    import json

    marker = os.path.join(made, "prepare_options.json")
    options = json.load(open(marker))["options"]
    json.dump(options, open(marker, "w"))  # the old format: the options alone
    stamp = os.path.getmtime(os.path.join(made, "train.csv"))
    prepare_synth(made, size="tiny", num_workers=2, progress=False)
    assert os.path.getmtime(os.path.join(made, "train.csv")) == stamp


def test_a_preparation_command_ends_with_the_message_not_a_traceback(tmp_path, capsys):
    from hieradist_lobes.data.timit import main

    with pytest.raises(SystemExit) as exited:
        main(["--data_folder", str(tmp_path / "nothere"), "--save_folder", str(tmp_path / "manifests")])
    error = capsys.readouterr().err
    assert exited.value.code == 1
    assert error == f"error: TIMIT data_folder {tmp_path / 'nothere'} does not exist\n"
