"""TensorBoard besides train_log.txt: what is logged, at which step, and a missing package named."""
import builtins

import pytest
from speechbrain.utils.train_logger import FileTrainLogger

from hieradist_lobes.experiment_logs import TensorboardMissing, read_scalars, with_tensorboard


def test_every_statistic_is_at_its_epoch_and_a_resumed_run_continues_the_curve(tmp_path):
    folder = str(tmp_path / "tensorboard")
    first = with_tensorboard(FileTrainLogger(str(tmp_path / "train_log.txt")), folder)
    first.log_stats({"epoch": 1, "lr": 0.5}, train_stats={"loss": 3.0}, valid_stats={"loss": 2.0, "error_rate": 90.0})
    # A resumed run is a new logger (a new event file): SpeechBrain's would start counting at 1 again.
    resumed = with_tensorboard(FileTrainLogger(str(tmp_path / "train_log.txt")), folder)
    resumed.log_stats({"epoch": 2, "lr": 0.25}, train_stats={"loss": 1.5}, valid_stats={"loss": 1.0, "error_rate": 40.0})
    resumed.log_stats({"Epoch loaded": 2, "split": "valid"}, test_stats={"loss": 1.0, "error_rate": 39.0})
    resumed.log_stats({"Epoch loaded": 2, "split": "test"}, test_stats={"loss": 1.1, "error_rate": 42.0})
    resumed.log_updates(300, {"loss_ctc": 0.7, "grad_norm_ctc": 2.0})
    scalars = read_scalars(folder)
    assert scalars["error_rate/valid"] == [(1, 90.0), (2, 40.0)]
    assert scalars["lr"] == [(1, 0.5), (2, 0.25)] and scalars["loss/train"] == [(1, 3.0), (2, 1.5)]
    assert scalars["error_rate/final_test"] == [(2, 42.0)] and scalars["error_rate/final_valid"] == [(2, 39.0)]
    assert scalars["update/grad_norm_ctc"] == [(300, 2.0)]
    assert not {"epoch", "Epoch loaded", "split"} & set(scalars)
    assert (tmp_path / "train_log.txt").read_text().count("valid loss") == 2


def test_a_missing_tensorboard_package_is_named_with_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(TensorboardMissing, match=r'pip install -e "\.\[tensorboard\]"'):
        with_tensorboard(FileTrainLogger(str(tmp_path / "train_log.txt")), str(tmp_path / "tensorboard"))
