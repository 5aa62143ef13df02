#!/usr/bin/env python3
"""Learning curves against wall-clock time: validation error after each epoch, two code versions side by side.

    git worktree add /tmp/before <older commit>
    python benchmarks/learning_curves.py --checkout before=/tmp/before --checkout after=. \\
        --teacher_store results/demo/teacher_store --json curves.json --plot curves.png

For the student distilled from the teacher store (``train_kd.yaml``, strategy
``average``) and the CIF baseline (``cif.yaml``), each code version (a checkout
of this repository, ``LABEL=PATH``) trains the same recipe with the same seed
and corpus, **the versions side by side with one thread each**, as the demo
trains: a change of the machine's speed falls on all alike.  Each run's
``log.txt`` gives the wall-clock time from the start of its first epoch to the
end of each epoch's validation, and the validation error there.

Per system the JSON gives every curve, each version's median seconds per epoch
and its speed-up per epoch over the first version, and the error every version
reached (the worst of their last errors) with the seconds each took to reach it.
The last speed-up moves with a seed's worth of difference between the curves
too: the versions draw random numbers in another order.  Compare figures only within one run (one
JSON): machines here differ by more than 3x and drift over hours.

A run folder that already holds a finished log is read, not trained again; one
with an unfinished log is refused (remove it, or give another ``--work_folder``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.threads import THREADS_VARIABLE, machine_description  # noqa: E402

SYSTEMS = ("student_kd", "cif")
EPOCH_START = re.compile(r"^(\S+ \S+) - speechbrain\.utils\.epoch_loop - INFO - Going into epoch (\d+)")
EPOCH_END = re.compile(r"^(\S+ \S+) - speechbrain\.utils\.train_logger - INFO - epoch: (\d+),.*"
                       r"valid error_rate: ([-+0-9.eE]+)")


def _log_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")


def read_curve(log_path: str) -> List[Dict[str, float]]:
    """Seconds from the start of the first epoch to the end of each epoch (its validation included),
    and the validation error there, from a recipe's ``log.txt``.

    Example
    -------
    >>> import tempfile
    >>> log = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    >>> _ = log.write("2026-12-07 15:04:56,450 - speechbrain.utils.epoch_loop - INFO - Going into epoch 1\\n"
    ...               "2026-12-07 15:05:25,950 - speechbrain.utils.train_logger - INFO - epoch: 1, lr: 2.00e-03"
    ...               " - train loss: 2.94 - valid loss: 1.95, valid error_rate: 1.22e+02\\n")
    >>> log.close()
    >>> read_curve(log.name)
    [{'epoch': 1, 'seconds': 29.5, 'valid_error_rate': 122.0}]
    """
    start: Optional[datetime.datetime] = None
    curve: List[Dict[str, float]] = []
    with open(log_path, encoding="utf-8") as log:
        for line in log:
            began = EPOCH_START.match(line)
            if began and start is None:
                if int(began.group(2)) != 1:
                    raise ValueError(f"{log_path}: the run resumed at epoch {began.group(2)}, so its times do not "
                                     "start at the beginning of training; train it again in an empty folder")
                start = _log_time(began.group(1))
                continue
            ended = EPOCH_END.match(line)
            if ended and start is not None:
                curve.append({"epoch": int(ended.group(2)),
                              "seconds": round((_log_time(ended.group(1)) - start).total_seconds(), 3),
                              "valid_error_rate": float(ended.group(3))})
    return curve


def seconds_to_reach(curve: Sequence[Dict[str, float]], error_rate: float) -> Optional[float]:
    """The wall-clock seconds at the end of the first epoch whose validation error is at most ``error_rate``.

    Example
    -------
    >>> seconds_to_reach([{"seconds": 30.0, "valid_error_rate": 60.0}, {"seconds": 61.0, "valid_error_rate": 9.5}], 10)
    61.0
    >>> seconds_to_reach([{"seconds": 30.0, "valid_error_rate": 60.0}], 10) is None
    True
    """
    return next((point["seconds"] for point in curve if point["valid_error_rate"] <= error_rate), None)


def compare(curves: Dict[str, List[Dict[str, float]]]) -> Dict[str, object]:
    """Each version's median seconds per epoch (validation included) and speed-up per epoch over the first
    version; the error every version reached (the worst of their last errors), the seconds each took to
    reach it, and the speed-up to it (which a seed's worth of difference in the curves moves as well).

    Example
    -------
    >>> compare({"before": [{"seconds": 40.0, "valid_error_rate": 20.0}, {"seconds": 80.0, "valid_error_rate": 8.0}],
    ...          "after": [{"seconds": 30.0, "valid_error_rate": 19.0}, {"seconds": 60.0, "valid_error_rate": 7.0}]})
    {'seconds_per_epoch': {'before': 40.0, 'after': 30.0}, 'speedup_per_epoch': {'after': 1.333}, \
'common_error_rate': 8.0, 'seconds_to_common_error_rate': {'before': 80.0, 'after': 60.0}, \
'speedup_to_common_error_rate': {'after': 1.333}}
    """
    labels = list(curves)
    per_epoch = {label: round(statistics.median(
        b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}] + curves[label], curves[label])), 3)
        for label in labels}
    common = max(curves[label][-1]["valid_error_rate"] for label in labels)
    reached = {label: seconds_to_reach(curves[label], common) for label in labels}
    first = reached[labels[0]]
    return {"seconds_per_epoch": per_epoch,
            "speedup_per_epoch": {label: round(per_epoch[labels[0]] / per_epoch[label], 3) for label in labels[1:]},
            "common_error_rate": common, "seconds_to_common_error_rate": reached,
            "speedup_to_common_error_rate": {label: round(first / reached[label], 3) for label in labels[1:]}}


def recipe_command(system: str, checkout: str, output_root: str, args: argparse.Namespace) -> List[str]:
    """The command line that trains ``system`` from ``checkout``'s recipe and YAML."""
    data = [f"--data_folder={os.path.abspath(args.data_folder)}", f"--corpus_size={args.corpus_size}",
            f"--output_root={output_root}"]
    if system == "student_kd":
        return [sys.executable, os.path.join(checkout, "recipes/multi_teacher_kd/train_kd.py"),
                os.path.join(checkout, "hparams/synth/train_kd.yaml"), "--strategy=average",
                f"--teacher_store={os.path.abspath(args.teacher_store)}",
                f"--number_of_epochs={args.kd_epochs}", *data]
    return [sys.executable, os.path.join(checkout, "recipes/cif_hieradist/train.py"),
            os.path.join(checkout, "hparams/synth/cif.yaml"), f"--output_neurons={args.cif_output_neurons}",
            f"--number_of_epochs={args.cif_epochs}", *data]


def run_folder(system: str, output_root: str) -> str:
    """Where the recipe of ``system`` writes under ``output_root`` (its YAML's experiment name)."""
    return os.path.join(output_root, "student_average" if system == "student_kd" else "cif")


def train_side_by_side(system: str, checkouts: Dict[str, str], args: argparse.Namespace, epochs: int
                       ) -> Dict[str, List[Dict[str, float]]]:
    """Train ``system`` from every checkout at once, one thread each; each run's curve."""
    runs: Dict[str, Tuple[str, Optional[subprocess.Popen]]] = {}
    for label, checkout in checkouts.items():
        output_root = os.path.abspath(os.path.join(args.work_folder, f"{system}_{label}"))
        folder = run_folder(system, output_root)
        log_path = os.path.join(folder, "log.txt")
        if os.path.exists(folder):
            curve = read_curve(log_path) if os.path.exists(log_path) else []
            if len(curve) >= epochs:
                print(f"{system} {label}: read from {folder}, trained before")
                runs[label] = (log_path, None)
                continue
            raise SystemExit(f"{folder} holds an unfinished run ({len(curve)} of {epochs} epochs), whose times would "
                             "not be one run's: remove it, or give another --work_folder")
        os.makedirs(output_root, exist_ok=True)
        env = {**os.environ, THREADS_VARIABLE: "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.abspath(checkout)}
        with open(os.path.join(output_root, "stdout.txt"), "w", encoding="utf-8") as out:
            process = subprocess.Popen(recipe_command(system, os.path.abspath(checkout), output_root, args),
                                       cwd=os.path.abspath(checkout), env=env, stdout=out, stderr=subprocess.STDOUT)
        print(f"{system} {label}: training from {checkout} into {folder}")
        runs[label] = (log_path, process)
    for label, (log_path, process) in runs.items():
        if process is not None and process.wait() != 0:
            raise SystemExit(f"{system} {label} failed (exit code {process.returncode}); its output is in "
                             f"{os.path.join(os.path.dirname(os.path.dirname(log_path)), 'stdout.txt')}")
    return {label: read_curve(log_path) for label, (log_path, _) in runs.items()}


def plot(results: Dict[str, object], path: str) -> None:
    """One panel per system: validation error against wall-clock minutes, one line per version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = results["systems"]
    figure, axes = plt.subplots(1, len(systems), figsize=(5.5 * len(systems), 4), squeeze=False)
    for axis, (system, entry) in zip(axes[0], systems.items()):
        for label, curve in entry["curves"].items():
            axis.plot([point["seconds"] / 60 for point in curve], [point["valid_error_rate"] for point in curve],
                      marker="o", label=label)
        axis.set_title(f"{system} (valid {entry['unit']})")
        axis.set_xlabel("wall-clock minutes (one thread, versions side by side)")
        axis.set_ylabel("validation error rate (%)")
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(results["machine"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def checkout_argument(value: str) -> Tuple[str, str]:
    label, separator, path = value.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"{value!r}: give LABEL=PATH, e.g. before=/tmp/before")
    if not os.path.isfile(os.path.join(path, "recipes", "cif_hieradist", "train.py")):
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of this repository (no recipes/cif_hieradist/train.py)")
    return label, path


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=checkout_argument, action="append", required=True,
                        help="LABEL=PATH of a checkout of this repository; give two or more, the first is the reference")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--corpus_size", default="small")
    parser.add_argument("--teacher_store", default="results/demo/teacher_store")
    parser.add_argument("--work_folder", default="results/learning_curves")
    parser.add_argument("--kd_epochs", type=int, default=4)
    parser.add_argument("--cif_epochs", type=int, default=12)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--plot", default=None, help="also draw the curves here (PNG)")
    args = parser.parse_args(argv)
    checkouts = dict(args.checkout)
    if len(checkouts) < 2:
        parser.error("give two or more --checkout LABEL=PATH with different labels")
    systems = [name for name in args.systems.split(",") if name]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if "student_kd" in systems and not os.path.isdir(args.teacher_store):
        parser.error(f"student_kd needs a teacher store: no folder {args.teacher_store} "
                     "(run make demo-full, or give --teacher_store)")
    if not os.path.isfile(os.path.join(args.data_folder, "train.csv")):
        parser.error(f"no corpus in {args.data_folder}: make it with python -m hieradist_lobes.data.synth "
                     f"--output_folder {args.data_folder} --size {args.corpus_size}")
    if "cif" in systems:
        from tools.demo import cif_output_neurons

        args.cif_output_neurons = cif_output_neurons(os.path.join(args.data_folder, "train.csv"))

    results: Dict[str, object] = {"machine": f"{machine_description()}, {len(checkouts)} trainings side by side, "
                                             "1 thread each",
                                  "checkouts": {label: os.path.abspath(path) for label, path in checkouts.items()},
                                  "systems": {}}
    for system in systems:
        epochs = args.kd_epochs if system == "student_kd" else args.cif_epochs
        curves = train_side_by_side(system, checkouts, args, epochs)
        results["systems"][system] = {"epochs": epochs, "unit": "PER" if system == "student_kd" else "TER",
                                      "curves": curves, **compare(curves)}
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    main()
