#!/usr/bin/env python3
"""Training throughput of each system on the built-in corpus (results go to docs/benchmarks.md).

    python benchmarks/throughput_benchmark.py --teacher_store results/demo/teacher_store \\
        --plm_store results/demo/plm_store --json throughput.json

For a teacher (``asr.yaml``), a student distilled from the teacher store
(``train_kd.yaml``), the CIF baseline (``cif.yaml``) and CIF+HieraDist
(``cif_kd.yaml``), each as its recipe trains it (the YAML's batches, drawn at
random with a fixed seed, read where its ``num_workers`` says, on the CPU):

- **updates per second** and **seconds of audio per second** over ``--steps``
  steps, the four systems' steps taken in turn (:mod:`step_timing`), so that a
  change of the machine's speed falls on all alike;
- **the top operators** of a few more steps of each (``torch.profiler``, self CPU
  time and calls per step): where a step's time goes.

Compare figures only within one run (one JSON): machines here differ by more
than 3× and drift over hours.  The JSON records the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Dict, List

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.hieradist_benchmark import cif_setting  # noqa: E402
from benchmarks.kd_benchmark import student_setting  # noqa: E402
from benchmarks.step_timing import Setting, interleaved_step_seconds  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.threads import available_cores, machine_description  # noqa: E402

SYSTEMS = ("teacher", "student_kd", "cif", "cif_hieradist")


def system_settings(data_folder: str, output_root: str, teacher_store: str, plm_store: str,
                    systems=SYSTEMS) -> Dict[str, Setting]:
    """Each system's fresh model (seed 1234), training set and loader options, as its recipe makes them."""
    common = {"data_folder": data_folder, "output_root": output_root, "train_sorting": "random"}
    makers = {
        "teacher": lambda: student_setting("hparams/synth/asr.yaml", common, distilled=False),
        "student_kd": lambda: student_setting("hparams/synth/train_kd.yaml", common, distilled=True,
                                              store_path=teacher_store),
        "cif": lambda: cif_setting("hparams/synth/cif.yaml", common, distilled=False),
        "cif_hieradist": lambda: cif_setting("hparams/synth/cif_kd.yaml",
                                             {**common, "distillation": "hieradist", "teacher_store": plm_store},
                                             distilled=True),
    }
    return {name: makers[name]() for name in systems}


def throughput(seconds: List[float], audio: List[float]) -> Dict[str, float]:
    """Updates and audio seconds per second of a setting's timed steps.

    Example
    -------
    >>> throughput([0.5, 0.5], [4.0, 6.0])
    {'seconds_per_update': 0.5, 'updates_per_second': 2.0, 'audio_seconds_per_second': 10.0}
    """
    total = sum(seconds)
    return {"seconds_per_update": round(statistics.fmean(seconds), 4),
            "updates_per_second": round(len(seconds) / total, 3),
            "audio_seconds_per_second": round(sum(audio) / total, 2)}


def top_operators(setting: Setting, steps: int, top: int = 12) -> List[Dict[str, object]]:
    """The operators with the most self CPU time over ``steps`` training steps, per step."""
    import speechbrain as sb
    from torch.profiler import ProfilerActivity, profile

    brain, dataset, loader_options = setting
    batches = iter(brain.make_dataloader(dataset, sb.Stage.TRAIN, **loader_options))
    brain.on_fit_start()  # as step_timing prepares a Brain: optimiser, training mode
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    brain.modules.train()
    brain.fit_batch(next(batches))  # warm-up, not profiled
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            brain.fit_batch(next(batches))
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    return [{"operator": event.key, "self_cpu_ms_per_step": round(event.self_cpu_time_total / 1000 / steps, 2),
             "share_pct": round(100 * event.self_cpu_time_total / total, 1), "calls_per_step": event.count // steps}
            for event in events[:top]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--output_root", default="results/demo")
    parser.add_argument("--teacher_store", default="results/demo/teacher_store")
    parser.add_argument("--plm_store", default="results/demo/plm_store")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each system")
    parser.add_argument("--profile_steps", type=int, default=5, help="profiled steps of each (0: no profile)")
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    systems = [name for name in args.systems.split(",") if name]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    for name, store in (("student_kd", args.teacher_store), ("cif_hieradist", args.plm_store)):
        if name in systems and not os.path.isdir(store):
            parser.error(f"{name} needs a store: no folder {store} (run make demo-full, or give its option)")
    torch.set_num_threads(args.threads)

    audio: Dict[str, List[float]] = {}
    seconds = interleaved_step_seconds(
        system_settings(args.data_folder, args.output_root, args.teacher_store, args.plm_store, systems),
        args.steps, audio_seconds=audio)
    results = {"machine": f"{machine_description()}, {torch.get_num_threads()} threads", "steps": args.steps,
               "systems": {name: throughput(seconds[name], audio[name]) for name in systems}}
    if args.profile_steps:
        # Fresh models: the profile is of the same early steps the timing saw.
        settings = system_settings(args.data_folder, args.output_root, args.teacher_store, args.plm_store, systems)
        for name in systems:
            results["systems"][name]["top_operators"] = top_operators(settings[name], args.profile_steps)
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)


if __name__ == "__main__":
    main()
