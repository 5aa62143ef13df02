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
