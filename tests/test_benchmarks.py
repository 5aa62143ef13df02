"""The benchmarks' own arithmetic (their figures are measured by running them, not here)."""
import types

import pytest
import torch

from benchmarks.step_timing import interleaved_step_seconds
from benchmarks.throughput_benchmark import throughput


class _CountingBrain:
    """Just what step_timing calls: batches of padded audio, and a record of the steps taken."""

    def __init__(self, batches, sample_rate=16000):
        self.batches, self.fitted = batches, []
        self.hparams = types.SimpleNamespace(sample_rate=sample_rate)
        self.modules = torch.nn.Module()

    def make_dataloader(self, dataset, stage, **options):
        return list(self.batches)

    def on_fit_start(self):
        pass

    def on_stage_start(self, stage, epoch):
        pass

    def fit_batch(self, batch):
        self.fitted.append(batch)


def _batch(lengths_in_samples):
    longest = max(lengths_in_samples)
    relative = torch.tensor([length / longest for length in lengths_in_samples])
    return types.SimpleNamespace(sig=(torch.zeros(len(lengths_in_samples), longest), relative))


def test_steps_are_taken_in_turn_and_audio_counts_without_padding():
    first = _CountingBrain([_batch([16000, 8000])] * 4)
    second = _CountingBrain([_batch([32000])] * 4, sample_rate=8000)
    audio = {}
    seconds = interleaved_step_seconds({"a": (first, None, {}), "b": (second, None, {})}, steps=3, warmup=1,
                                       audio_seconds=audio)
    assert [len(seconds[name]) for name in "ab"] == [3, 3] and len(first.fitted) == len(second.fitted) == 4
    assert audio["a"] == pytest.approx([1.5] * 3) and audio["b"] == pytest.approx([4.0] * 3)


def test_too_few_batches_are_named():
    with pytest.raises(ValueError, match="the training set of a gave only 2 batches"):
        interleaved_step_seconds({"a": (_CountingBrain([_batch([10])] * 2), None, {})}, steps=2, warmup=1)


def test_throughput_is_updates_and_audio_over_the_wall_time():
    figures = throughput([0.2, 0.3, 0.5], [2.0, 3.0, 5.0])
    assert figures == {"seconds_per_update": pytest.approx(1 / 3, abs=1e-4), "updates_per_second": 3.0,
                       "audio_seconds_per_second": 10.0}


def _write_log(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


_START = "2026-12-07 15:04:56,450 - speechbrain.utils.epoch_loop - INFO - Going into epoch {}"
_END = ("2026-12-07 15:{} - speechbrain.utils.train_logger - INFO - epoch: {}, lr: 2.00e-03 - train loss: 2.94"
        " - valid loss: 1.95, valid error_rate: {}")


def test_learning_curve_times_run_from_the_first_epoch_to_each_validation(tmp_path):
    from benchmarks.learning_curves import read_curve

    log = _write_log(tmp_path / "log.txt", [
        "2026-12-07 15:04:50,000 - speechbrain.core - INFO - Beginning experiment!",
        _START.format(1), _END.format("05:25,450", 1, "1.22e+02"),
        "2026-12-07 15:05:25,460 - speechbrain.utils.epoch_loop - INFO - Going into epoch 2",
        _END.format("06:00,950", 2, "26.12"),
        "2026-12-07 15:06:01,000 - speechbrain.utils.train_logger - INFO - Epoch loaded: 2 - test loss: 0.62, "
        "test error_rate: 5.59"])
    assert read_curve(log) == [{"epoch": 1, "seconds": 29.0, "valid_error_rate": 122.0},
                               {"epoch": 2, "seconds": 64.5, "valid_error_rate": 26.12}]


def test_a_resumed_run_is_refused_as_a_learning_curve(tmp_path):
    from benchmarks.learning_curves import read_curve

    log = _write_log(tmp_path / "log.txt", [_START.format(3), _END.format("05:25,450", 3, "9.0")])
    with pytest.raises(ValueError, match="resumed at epoch 3"):
        read_curve(log)


def test_learning_curves_compare_the_time_to_the_error_every_version_reached():
    from benchmarks.learning_curves import compare

    curves = {"before": [{"seconds": 40.0, "valid_error_rate": 50.0}, {"seconds": 80.0, "valid_error_rate": 12.0}],
              "after": [{"seconds": 20.0, "valid_error_rate": 11.0}, {"seconds": 40.0, "valid_error_rate": 10.0}]}
    assert compare(curves) == {"seconds_per_epoch": {"before": 40.0, "after": 20.0}, "speedup_per_epoch": {"after": 2.0},
                               "common_error_rate": 12.0,
                               "seconds_to_common_error_rate": {"before": 80.0, "after": 20.0},
                               "speedup_to_common_error_rate": {"after": 4.0}}


def test_learning_curves_refuse_a_folder_that_is_not_a_checkout_and_an_unfinished_run(tmp_path, capsys):
    from benchmarks import learning_curves

    with pytest.raises(SystemExit):
        learning_curves.main(["--checkout", f"before={tmp_path}", "--checkout", "after=."])
    assert "is not a checkout of this repository" in capsys.readouterr().err
    unfinished = tmp_path / "work" / "cif_before" / "cif"
    unfinished.mkdir(parents=True)
    _write_log(unfinished / "log.txt", [_START.format(1), _END.format("05:25,450", 1, "90.0")])
    args = types.SimpleNamespace(work_folder=str(tmp_path / "work"))
    with pytest.raises(SystemExit, match=r"unfinished run \(1 of 12 epochs\)"):
        learning_curves.train_side_by_side("cif", {"before": "."}, args, epochs=12)


def test_timestamp_errors_count_only_correctly_recognised_words():
    from benchmarks.timestamp_benchmark import error_summary, matched_words

    hypothesis = [("the", 0.10, 0.20), ("cat", 0.20, 0.50), ("sat", 0.55, 0.90)]
    reference = [("THE", 0.12, 0.22), ("DOG", 0.20, 0.45), ("SAT", 0.50, 0.80)]
    pairs = matched_words(hypothesis, reference)
    assert [(hyp[0], ref[0]) for hyp, ref in pairs] == [("the", "THE"), ("sat", "SAT")]
    starts = [1000 * (hyp[1] - ref[1]) for hyp, ref in pairs]
    assert error_summary(starts) == {"mae_ms": 35.0, "median_ms": 35.0, "within_80ms_pct": 100.0}
