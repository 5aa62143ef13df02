"""The demo: multi-teacher distillation end to end on the built-in corpus.

    python -m hieradist_lobes.demo --output_folder results/demo     (what ``make demo`` runs)

Steps: make the ``small`` corpus → train the teachers (``variants.yaml``:
tea0, tea1, tea2) → store their outputs → train the student without
distillation (the baseline) and with each strategy (average, best, weighted)
→ evaluate every system on the test speakers (voices never heard in
training) → print a table, write ``summary.json`` and ``summary.png``
(error rates and validation curves), and check that every student loads with
``EncoderDecoderASR.from_hparams`` and transcribes a test file.

An interrupted demo resumes: finished models are not retrained (SpeechBrain
checkpoints), the teacher store continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Dict, List, Optional, Sequence

from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.experiment import save_teachers, train_asr_model

TEACHERS = ("tea0", "tea1", "tea2")
STRATEGIES = ("average", "best", "weighted")


def run_demo(output_folder: str, data_folder: str, epochs: Optional[int] = None, corpus_size: str = "small",
             extra: Sequence[str] = ()) -> Dict[str, object]:
    """Run every step; return the summary (also written to ``summary.json``)."""
    os.makedirs(output_folder, exist_ok=True)
    common = [f"--data_folder={data_folder}", f"--corpus_size={corpus_size}", f"--output_root={output_folder}",
              *([f"--number_of_epochs={epochs}"] if epochs else []), *extra]
    systems: Dict[str, Dict[str, object]] = {}
    timings: Dict[str, float] = {}

    def train(name: str, kind: str, strategy: Optional[str], argv: List[str], distillation: bool = False) -> None:
        start = time.time()
        result = train_asr_model(argv, distillation=distillation)
        timings[name] = round(time.time() - start, 1)
        systems[name] = {"kind": kind, "strategy": strategy, **result}

    for teacher in TEACHERS:
        train(teacher, "teacher", None, ["hparams/synth/asr.yaml", f"--variant={teacher}", *common])
    start = time.time()
    store = save_teachers(["hparams/synth/save_teachers.yaml", *common_without_epochs(common)])
    timings["save_teachers"] = round(time.time() - start, 1)
    train("student_baseline", "student", None,
          ["hparams/synth/asr.yaml", "--variant=student", "--experiment_name=student_baseline", *common])
    for strategy in STRATEGIES:
        train(f"student_{strategy}", "student", strategy,
              ["hparams/synth/train_kd.yaml", f"--strategy={strategy}", *common], distillation=True)

    test_manifest = os.path.join(os.path.abspath(data_folder), "test.csv")
    check_students(systems, read_manifest(test_manifest)[0]["wav"])
    summary = {"systems": systems, "teacher_store": os.path.abspath(store), "test_manifest": test_manifest,
               "seconds": timings}
    with open(os.path.join(output_folder, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    plot_summary(summary, output_folder, os.path.join(output_folder, "summary.png"))
    print(format_table(summary))
    return summary


def common_without_epochs(arguments: Sequence[str]) -> List[str]:
    """save_teachers has no epochs; drop that override."""
    return [a for a in arguments if not a.startswith("--number_of_epochs")]


def check_students(systems: Dict[str, Dict[str, object]], wav: str) -> None:
    """Load every student folder as SpeechBrain would and transcribe ``wav``."""
    from speechbrain.inference.ASR import EncoderDecoderASR

    for system in systems.values():
        if system["kind"] != "student":
            continue
        asr = EncoderDecoderASR.from_hparams(source=system["model_dir"], savedir=system["model_dir"])
        system["example_transcription"] = asr.transcribe_file(wav)


def format_table(summary: Dict[str, object]) -> str:
    """The summary as a text table."""
    lines = [f"{'system':<20}{'kind':<9}{'strategy':<10}{'params':>10}{'valid PER':>11}{'test PER':>10}"]
    for name, system in summary["systems"].items():
        lines.append(f"{name:<20}{system['kind']:<9}{system['strategy'] or '-':<10}{system['params']:>10,}"
                     f"{system['valid_error_rate']:>11.2f}{system['test_error_rate']:>10.2f}")
    return "\n".join(lines)


def read_history(model_dir: str) -> List[Dict[str, float]]:
    """Per-epoch statistics written by the Brain (``history.jsonl``)."""
    path = os.path.join(os.path.dirname(model_dir), "history.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def plot_summary(summary: Dict[str, object], output_folder: str, path: str) -> None:
    """Bar chart of the test error rates and validation curves, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = summary["systems"]
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(systems)
    colours = ["tab:blue" if systems[n]["kind"] == "teacher" else
               ("tab:grey" if systems[n]["strategy"] is None else "tab:orange") for n in names]
    rates = [systems[n]["test_error_rate"] for n in names]
    bars.bar(names, rates, color=colours)
    for index, rate in enumerate(rates):
        bars.text(index, rate, f"{rate:.1f}", ha="center", va="bottom", fontsize=8)
    bars.set_ylabel("test PER (%)")
    bars.set_title("Test speakers (unseen voices)")
    bars.tick_params(axis="x", rotation=35)
    for name in names:
        history = read_history(systems[name]["model_dir"])
        if history:
            curves.plot([h["epoch"] for h in history], [h["valid_error_rate"] for h in history], marker="o",
                        label=name, linestyle="--" if systems[name]["kind"] == "teacher" else "-")
    from matplotlib.ticker import MaxNLocator

    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_xlabel("epoch")
    curves.set_ylabel("valid PER (%, greedy decoding)")
    curves.set_title("Training curves")
    curves.set_ylim(bottom=0)
    curves.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point (``make demo``)."""
    parser = argparse.ArgumentParser(description="Multi-teacher distillation demo on the built-in corpus.")
    parser.add_argument("--output_folder", default="results/demo")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--corpus_size", default="small", choices=["tiny", "small", "medium"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the YAML's)")
    args, extra = parser.parse_known_args(argv)
    run_demo(args.output_folder, args.data_folder, args.epochs, args.corpus_size, extra)


if __name__ == "__main__":
    main()
