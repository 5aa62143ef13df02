import importlib.util
from pathlib import Path

import pytest

from hieradist_lobes.cli import path_argument


def _demo():
    path = Path(__file__).resolve().parents[1] / "tools" / "demo.py"
    spec = importlib.util.spec_from_file_location("tools_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_empty_path_is_refused():
    import argparse

    assert path_argument("results/x") == "results/x"
    for text in ("", "  "):
        with pytest.raises(argparse.ArgumentTypeError, match="the path is empty"):
            path_argument(text)


def test_every_command_line_names_an_empty_path_and_stops(tmp_path, capsys):
    """An unset shell variable as a path: argparse's usage error naming the option (exit 2), not a
    raw TypeError, and nothing written."""
    from hieradist_lobes import teacher_store, tuning
    from hieradist_lobes.data import librispeech, synth, timit

    commands = [
        (timit.main, ["--data_folder", "", "--save_folder", str(tmp_path / "m")], "--data_folder"),
        (librispeech.main, ["--data_folder", str(tmp_path), "--save_folder", ""], "--save_folder"),
        (synth.main, ["--output_folder", ""], "--output_folder"),
        (teacher_store.main, ["info", ""], "path"),
        (teacher_store.main, ["copy", str(tmp_path), ""], "destination"),
        (tuning.main, ["--model_dir", "", "--valid_csv", "v.csv", "--plm_path", "p"], "--model_dir"),
        (_demo().main, ["--output_folder", ""], "--output_folder"),
        (_demo().main, ["--data_folder", " ", "--output_folder", str(tmp_path / "out")], "--data_folder"),
    ]
    for main, argv, option in commands:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        error = capsys.readouterr().err
        assert stop.value.code == 2 and f"argument {option}: the path is empty" in error, (argv, error)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_every_error_of_the_project_is_reported_without_a_traceback():
    from hieradist_lobes.brains import DivergenceError
    from hieradist_lobes.data.common import PreparationError
    from hieradist_lobes.data.espeak import EspeakError
    from hieradist_lobes.data.manifest import ManifestError
    from hieradist_lobes.data.phones import UnknownPhoneError
    from hieradist_lobes.data.validation import ManifestCheckError
    from hieradist_lobes.errors import ReportedError
    from hieradist_lobes.export import ModelFolderError
    from hieradist_lobes.hparams import HparamsError
    from hieradist_lobes.jobs import JobError
    from hieradist_lobes.plm import PLMAlignmentError, PLMTextTooLongError
    from hieradist_lobes.store_codecs import TeacherStoreError

    for error in (DivergenceError, PreparationError, EspeakError, ManifestError, UnknownPhoneError,
                  ManifestCheckError, ModelFolderError, HparamsError, JobError, PLMAlignmentError,
                  PLMTextTooLongError, TeacherStoreError):
        assert issubclass(error, ReportedError), error


def test_run_command_prints_a_reported_error_and_keeps_other_tracebacks(tmp_path, monkeypatch, capsys):
    import logging

    from hieradist_lobes.cli import TRACEBACK_VARIABLE, run_command
    from hieradist_lobes.data.manifest import ManifestError

    def mistake(argv):
        raise ManifestError("train.csv, line 3 (utterance u2): the wav a.wav does not exist")

    handler = logging.FileHandler(tmp_path / "log.txt")
    logging.getLogger().addHandler(handler)
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    try:
        with pytest.raises(SystemExit) as stop:
            run_command(mistake, [])
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert stop.value.code == 1
    assert capsys.readouterr().err.startswith("error: train.csv, line 3 (utterance u2): the wav a.wav does not exist\n")
    assert "error: train.csv, line 3" in (tmp_path / "log.txt").read_text()
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(ManifestError):
        run_command(mistake, [])

    def bug(argv):
        raise KeyError("not a user's mistake")

    monkeypatch.delenv(TRACEBACK_VARIABLE)
    with pytest.raises(KeyError):
        run_command(bug, [])
    assert run_command(lambda argv: argv, ["a"]) == ["a"]


def test_a_recipe_stopped_by_a_mistake_prints_the_message_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for script, yaml in (("multi_teacher_kd/train_teacher.py", "synth/asr.yaml"),
                         ("cif_hieradist/train.py", "synth/cif.yaml")):
        command = [sys.executable, str(root / "recipes" / script), str(root / "hparams" / yaml), "--lr=-1",
                   f"--output_root={tmp_path}"]
        environment = {key: value for key, value in os.environ.items() if key != "HIERADIST_TRACEBACK"}
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
        assert done.returncode == 1, done.stderr
        assert "error: " in done.stderr and "lr = -1: must be a number > 0" in done.stderr
        assert "Traceback" not in done.stderr + done.stdout
    done = subprocess.run(command, capture_output=True, text=True, env={**environment, "HIERADIST_TRACEBACK": "1"},
                          timeout=300)
    assert done.returncode == 1 and "Traceback" in done.stderr and "HparamsError" in done.stderr


def test_a_second_run_into_the_same_output_folder_stops_naming_the_first(tmp_path):
    """Two train_teacher.py runs into one folder both ran to exit 0, their logs and checkpoints interleaved."""
    import subprocess
    import sys

    from hieradist_lobes.cli import OutputFolderBusy, hold_output_folder

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path / "tea0"
    first = subprocess.Popen([sys.executable, "-c", "import sys, time; from hieradist_lobes.cli import "
                              "hold_output_folder; hold_output_folder(sys.argv[1]); print('held', flush=True); "
                              "time.sleep(120)", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        script = root / "recipes" / "multi_teacher_kd" / "train_teacher.py"
        spec = importlib.util.spec_from_file_location("train_teacher", script)
        recipe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recipe)
        with pytest.raises(OutputFolderBusy, match=f"another run \\(pid {first.pid} on .*\\) is writing into "
                                                   f".*tea0; wait for it to finish or stop it"):
            recipe.main([str(root / "hparams/synth/asr.yaml"), f"--output_root={tmp_path}", "--experiment_name=tea0"])
        assert not (folder / "log.txt").exists() and not (folder / "hyperparams.yaml").exists()
    finally:
        first.kill()
        first.wait()
    hold_output_folder(str(folder))  # the killed run left no stale lock


def test_a_command_closes_its_process_group_and_nothing_without_one(tmp_path):
    import torch.distributed as dist

    from hieradist_lobes.cli import close_process_group, run_command

    close_process_group(wait=True)  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert run_command(lambda argv: "done", []) == "done"
    assert not dist.is_initialized()
