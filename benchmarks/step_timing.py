"""Seconds per training step of Brains over their DataLoaders, as training runs them.

Shared by the step-overhead benchmarks (kd_benchmark.py, hieradist_benchmark.py):
the time of a step includes fetching its batch (audio and, for a distilled
step, the teacher store, read where the YAML's ``num_workers`` says) and
``fit_batch`` (forward, losses, backward, optimiser), nothing else.

The settings compared take their steps in turn (plain, distilled, plain, ...),
each on its own model and its own loader: a change of the machine's speed
(another job, a shared host's throttling) then falls on both alike.  Timing
them one after the other in rounds of 40 steps did not: on the 2-core machine
the mean of a round of the same setting moved by up to 20 % from round to
round, and the overhead of one benchmark run ranged from −0.4 to +13.5 %.
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, List, Mapping, Optional, Tuple

import speechbrain as sb
import torch

#: A setting to time: the Brain, its training set and its loader options.
Setting = Tuple[sb.Brain, object, Dict[str, object]]


def interleaved_step_seconds(settings: Mapping[str, Setting], steps: int, warmup: int = 3,
                             audio_seconds: Optional[Dict[str, List[float]]] = None) -> Dict[str, List[float]]:
    """Seconds of each of ``steps`` training steps per setting (after ``warmup``
    steps each), the settings' steps taken in turn.

    Every loader's order is drawn from the same seed, so settings over the
    same training set see the same batches in the same order.  With
    ``audio_seconds``, the seconds of audio in each timed batch are appended
    there too (``sample_rate`` of each Brain's hparams; padding not counted).
    """
    iterators = {}
    for name, (brain, dataset, loader_options) in settings.items():
        torch.manual_seed(0)
        loader = brain.make_dataloader(dataset, sb.Stage.TRAIN, **loader_options)
        brain.on_fit_start()
        brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
        brain.modules.train()
        iterators[name] = iter(loader)
    durations: Dict[str, List[float]] = {name: [] for name in settings}
    for index in range(warmup + steps):
        for name, (brain, _, _) in settings.items():
            start = time.perf_counter()
            batch = next(iterators[name], None)
            if batch is None:
                raise ValueError(f"the training set of {name} gave only {index} batches; ask for fewer steps")
            brain.fit_batch(batch)
            if index >= warmup:
                durations[name].append(time.perf_counter() - start)
                if audio_seconds is not None:
                    wavs, relative_lengths = batch.sig
                    samples = float((relative_lengths * wavs.shape[1]).sum())
                    audio_seconds.setdefault(name, []).append(samples / brain.hparams.sample_rate)
    return durations


def overhead(plain: List[float], extra: List[float]) -> Dict[str, float]:
    """Mean seconds per step of both (what a run waits for, stalls included) and
    the relative overhead of ``extra`` in percent.

    Example
    -------
    >>> overhead([1.0, 1.2], [1.2, 1.11])["overhead_pct"]
    5.0
    """
    plain_mean, extra_mean = statistics.fmean(plain), statistics.fmean(extra)
    return {"plain_seconds_per_step": round(plain_mean, 4), "seconds_per_step": round(extra_mean, 4),
            "overhead_pct": round(100 * (extra_mean / plain_mean - 1), 1)}
