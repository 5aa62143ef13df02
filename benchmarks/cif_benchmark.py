#!/usr/bin/env python3
"""Benchmark of vectorised integrate-and-fire against a loop over frames (CPU, forward + backward).

    python benchmarks/cif_benchmark.py --batch 32 --frames 600 --dim 512 --threads 2 --json cif.json

Compares, on the same inputs:

1. :func:`hieradist_lobes.cif.integrate_and_fire` (no Python loop over frames
   or utterances);
2. a baseline written here: a Python loop over frames, vectorised over the
   batch (a ``while`` loop over the masks of utterances that still fire
   handles frames that fire several times), fires collected in a list and
   placed once at the end.

Each on two kinds of weights: ``typical`` (sigmoid of noise scaled so that
about one frame in four fires) and ``large`` (the same plus, on 5 % of the
frames, weights of 1.5 to 3 thresholds, which fire several times).  Both
implementations must agree on the inputs before anything is timed.

Timing notes.  Medians (and minima) of wall-clock time, after warm-up runs.
The agreement check runs both implementations first, so both are timed with
a warm allocator; in a fresh process the first ``[batch, frames, dim]``
gradient buffer costs page faults (tens of ms here) that a training loop
pays once.  With 2 threads on a 2-core machine that other processes keep
busy, every parallel operation may wait a scheduler slice for its second
thread: the vectorised version (few, large operations) suffers far more
than the loop (many small, serial ones), so time it on an otherwise idle
machine or with ``--threads 1``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hieradist_lobes.cif import integrate_and_fire  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.threads import machine_description  # noqa: E402


def loop_integrate_and_fire(
    alphas: torch.Tensor,
    hidden: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: Optional[float] = None,
    eps: float = 1e-4,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Integrate-and-fire with a Python loop over frames, vectorised over the batch.

    The state ``w`` ``[batch]`` and ``v`` ``[batch, dim]`` is updated frame by
    frame; each pass of the inner ``while`` fires the utterances whose weight
    reaches the threshold.  Fired vectors go to a list (no tensor grows) and
    are placed into the output with one ``index_put`` at the end.

    Example
    -------
    >>> fired, lengths = loop_integrate_and_fire(torch.tensor([[0.6, 0.6, 0.9]]), torch.ones(1, 3, 2))
    >>> lengths.tolist(), fired[0, :, 0].tolist()
    ([2], [1.0, 1.0])
    """
    batch, frames, dim = hidden.shape
    w = alphas.new_zeros(batch)
    v = hidden.new_zeros(batch, dim)
    count = torch.zeros(batch, dtype=torch.long)
    outputs: List[torch.Tensor] = []  # [batch, dim] candidate fires
    slots: List[torch.Tensor] = []  # [batch] their slot, -1 where that utterance did not fire
    # unbind: one backward node for all frames (slicing hidden[:, t] would give each frame a
    # full-size zero gradient in backward, a 100× slower baseline than need be).
    for a, h in zip(alphas.unbind(1), hidden.unbind(1)):
        fire = (w + a) >= threshold - eps
        while bool(fire.any()):
            take = threshold - w
            outputs.append(v + take.unsqueeze(1) * h)
            slots.append(torch.where(fire, count, -1))
            count = count + fire.long()
            a = torch.where(fire, a - take, a)
            w = torch.where(fire, torch.zeros_like(w), w)
            v = torch.where(fire.unsqueeze(1), torch.zeros_like(v), v)
            fire = (w + a) >= threshold - eps
        w = w + a
        v = v + a.unsqueeze(1) * h
    lengths = count.clone()
    if tail_threshold is not None:
        tail = (w >= tail_threshold) & (w > 0)
        safe = torch.where(tail, w, torch.ones_like(w))
        outputs.append(v / safe.unsqueeze(1) * threshold)
        slots.append(torch.where(tail, count, -1))
        lengths = lengths + tail.long()
    width = int(lengths.max().item()) if batch else 0
    fired = hidden.new_zeros(batch, width, dim)
    if outputs:
        stacked = torch.stack(outputs)  # [events, batch, dim]
        where = torch.stack(slots)
        event, row = (where >= 0).nonzero(as_tuple=True)
        fired = fired.index_put((row, where[event, row]), stacked[event, row])
    return fired, lengths


def make_alphas(batch: int, frames: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Weights with about one fire per 4 frames; ``large`` adds multi-fire frames."""
    alphas = torch.sigmoid(torch.randn(batch, frames, generator=generator))
    alphas = alphas * (0.25 / alphas.mean())
    if kind == "large":
        spikes = torch.rand(batch, frames, generator=generator) < 0.05
        alphas = torch.where(spikes, 1.5 + 1.5 * torch.rand(batch, frames, generator=generator), alphas)
    # Some padding, as in a real batch: utterance b keeps its first 60–100 % of frames.
    keep = (frames * (0.6 + 0.4 * torch.rand(batch, generator=generator))).long()
    keep[0] = frames
    return alphas * (torch.arange(frames).unsqueeze(0) < keep.unsqueeze(1))


def time_fwd_bwd(function: Callable, alphas: torch.Tensor, hidden: torch.Tensor, repeats: int,
                 warmup: int = 2) -> List[float]:
    """Seconds of ``function`` forward + backward of ``sum(fired · weights)``, ``repeats`` times."""
    weights = None
    times = []
    for index in range(warmup + repeats):
        a = alphas.clone().requires_grad_(True)
        h = hidden.clone().requires_grad_(True)
        start = time.perf_counter()
        fired, _ = function(a, h, 1.0, 0.5)
        if weights is None or weights.shape != fired.shape:
            weights = torch.randn(fired.shape, generator=torch.Generator().manual_seed(0))
        (fired * weights).sum().backward()
        elapsed = time.perf_counter() - start
        if index >= warmup:
            times.append(elapsed)
    return times


def check_agreement(alphas: torch.Tensor, hidden: torch.Tensor) -> Dict[str, float]:
    """Both implementations on the benchmark input: same lengths, close values and gradients.

    Checked in float64, where both take the same fire decisions; in float32 a
    frame that brings the weight within rounding of the threshold may fire in
    one and not (until the next frame) in the other, which moves a boundary by
    a negligible weight but changes the gradient w.r.t. the alphas.
    """
    results = {}
    runs = []
    for function in (integrate_and_fire, loop_integrate_and_fire):
        a = alphas.double().requires_grad_(True)
        h = hidden.double().requires_grad_(True)
        fired, lengths = function(a, h, 1.0, 0.5)
        weights = torch.randn(fired.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        (fired * weights).sum().backward()
        runs.append((fired.detach(), lengths, a.grad, h.grad))
    (f1, l1, ga1, gh1), (f2, l2, ga2, gh2) = runs
    if not torch.equal(l1, l2):
        raise SystemExit(f"lengths differ: {l1.tolist()} vs {l2.tolist()}")
    for name, x, y in (("fired", f1, f2), ("grad_alphas", ga1, ga2), ("grad_hidden", gh1, gh2)):
        if not torch.allclose(x, y, rtol=1e-9, atol=1e-9):
            raise SystemExit(f"{name} differ: max abs difference {(x - y).abs().max().item():.3g}")
        results[f"max_abs_diff_{name}"] = float((x - y).abs().max())
    # The timed runs are in float32: their values agree too, up to the rare near-tie, where a
    # fire may borrow its last ≤ eps of weight from the next frame in one and not the other.
    f32, l32 = integrate_and_fire(alphas, hidden, 1.0, 0.5)
    g32, m32 = loop_integrate_and_fire(alphas, hidden, 1.0, 0.5)
    if not torch.equal(l32, m32) or not torch.allclose(f32, g32, rtol=1e-3, atol=2e-3):
        raise SystemExit("float32 values differ")
    results["max_abs_diff_fired_float32"] = float((f32 - g32).abs().max())
    results["fires_per_frame"] = float(l1.sum()) / float((alphas > 0).sum())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of the vectorised version")
    parser.add_argument("--loop_repeats", type=int, default=5, help="timed runs of the (slow) loop")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for kind in ("typical", "large"):
        generator = torch.Generator().manual_seed(args.seed)
        alphas = make_alphas(args.batch, args.frames, kind, generator)
        hidden = torch.randn(args.batch, args.frames, args.dim, generator=generator)
        agreement = check_agreement(alphas, hidden)
        vectorised = time_fwd_bwd(integrate_and_fire, alphas, hidden, args.repeats)
        loop = time_fwd_bwd(loop_integrate_and_fire, alphas, hidden, args.loop_repeats, 1)
        median_v, median_l = statistics.median(vectorised), statistics.median(loop)
        rows.append({"alphas": kind, "vectorised_ms": round(1000 * median_v, 2), "loop_ms": round(1000 * median_l, 1),
                     "speedup": round(median_l / median_v, 1),
                     # The minima are the least disturbed by other processes on a shared machine.
                     "vectorised_min_ms": round(1000 * min(vectorised), 2), "loop_min_ms": round(1000 * min(loop), 1),
                     **{k: float(f"{v:.3g}") for k, v in agreement.items()}})

    results = {
        "machine": f"{machine_description()}, {torch.get_num_threads()} threads",
        "shape": {"batch": args.batch, "frames": args.frames, "dim": args.dim},
        "median_fwd_bwd": rows,
    }
    print(f"B={args.batch}, T={args.frames}, D={args.dim}; {results['machine']}; forward + backward, median\n")
    print("| alphas | fires/frame | vectorised ms (min) | loop over frames ms (min) | speed-up |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['alphas']} | {row['fires_per_frame']:.3f} | {row['vectorised_ms']} ({row['vectorised_min_ms']}) "
              f"| {row['loop_ms']} ({row['loop_min_ms']}) | {row['speedup']}× |")
    if args.json:
        write_json(args.json, results, indent=2)


if __name__ == "__main__":
    main()
