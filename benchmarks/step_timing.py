"""Seconds per training step of a Brain over a DataLoader, as training runs them.

Shared by the step-overhead benchmarks (kd_benchmark.py, hieradist_benchmark.py):
the time of a step includes waiting for its batch (DataLoader workers reading
audio and the teacher store), ``fit_batch`` (forward, losses, backward,
optimiser) and nothing else.
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, List

import speechbrain as sb
import torch


def step_seconds(brain: sb.Brain, dataset, loader_options: Dict[str, object], steps: int,
                 warmup: int = 3) -> List[float]:
    """Seconds of each of ``steps`` training steps after ``warmup`` steps."""
    torch.manual_seed(0)
    loader = brain.make_dataloader(dataset, sb.Stage.TRAIN, **loader_options)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    brain.modules.train()
    durations = []
    start = time.perf_counter()
    for index, batch in enumerate(loader):
        brain.fit_batch(batch)
        now = time.perf_counter()
        if index >= warmup:
            durations.append(now - start)
        start = now
        if len(durations) >= steps:
            break
    if len(durations) < steps:
        raise ValueError(f"the training set gave only {len(durations) + warmup} batches; ask for fewer steps")
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
