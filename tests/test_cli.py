import importlib.util
from pathlib import Path

import pytest

from hieradist_lobes.cli import path_argument


def _demo():
    spec = importlib.util.spec_from_file_location("tools_demo", Path(__file__).resolve().parents[1] / "tools" / "demo.py")
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
