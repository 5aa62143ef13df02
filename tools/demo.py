"""The demo: both systems end to end on the built-in corpus.

    python tools/demo.py --quick --output_folder results/demo_quick   (``make demo``)
    python tools/demo.py --output_folder results/demo                 (``make demo-full``)
    python tools/demo.py --output_folder results/experiments --seeds 1234,1235,1236 \
        --store_top_k 5 --ablations --parts kd,cif,cif_low_resource   (``make experiments``)

It runs the recipes of ``recipes/`` with the YAMLs of ``hparams/synth/`` (paths
relative to this repository, wherever it is run from), two trainings side by
side on a machine with 2 cores or more (``--jobs``; each in its own process
with its share of the cores, its output in ``<output_folder>/logs/<name>.log``;
the demo prints a line as each starts and ends).

Part ``kd`` (multi-teacher distillation): make the ``small`` corpus → train
the teachers (``asr.yaml`` = tea0, ``tea1.yaml``, ``tea2.yaml``) → store their outputs →
train the student without distillation (the baseline) and with each strategy
(average, best, weighted).

Part ``cif`` (CIF-HieraDist): train the CIF baseline → store the PLM
(all-MiniLM-L6-v2) features of the training transcripts → train CIF+ACD,
CIF+LRD and CIF+HieraDist (same seed, same epochs; each recipe chooses its
CTC decoding weight on the validation set) and the same-units control (the
CTC/attention model on the same wordpieces, for about the same CPU time; not
in ``--quick``) →
train the token LM on the corpus's LM text → for every CIF model, choose the
LM weight on the validation set and score the test speakers with it.

Part ``cif_low_resource`` (not in the default parts): the CIF baseline, ACD, LRD
and HieraDist again on a quarter of each training speaker's utterances (the same
voices) with 4x the epochs (as many updates), with that subset's vocabulary, PLM
store and LM; it compares only with itself, so it can run alone.

Then: evaluate every system on the test speakers (voices never heard in
training), print a table, write ``summary.json`` and ``summary.png`` (error
rates and validation curves), and check that every student loads with
``EncoderDecoderASR.from_hparams`` and every CIF model with
:class:`~hieradist_lobes.inference.CIFASR`, transcribing a test file.

With several ``--seeds``, every student and CIF system is trained once per
seed (teachers and stores once) and ``summary.json`` gives each its runs and
``<score>_mean`` / ``<score>_std``; the chart draws error bars.

An interrupted demo resumes: finished models are not retrained (SpeechBrain
checkpoints), the teacher store continues where it stopped.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from hieradist_lobes.cli import path_argument, run_command
from hieradist_lobes.errors import ReportedError
from hieradist_lobes.data import prepare_dataset
from hieradist_lobes.data.manifest import read_manifest, speaker_subset
from hieradist_lobes.hparams import plain_value
from hieradist_lobes.files import staged_file, write_json
from hieradist_lobes.jobs import Job, run_jobs
from hieradist_lobes.threads import available_cores, machine_description
from hieradist_lobes.tuning import LM_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
HPARAMS = ROOT / "hparams" / "synth"


def recipe(path: str) -> str:
    """The path of a recipe script under ``recipes/`` (e.g. ``multi_teacher_kd/train_kd.py``)."""
    return str(ROOT / "recipes" / path)


def synth_yaml(name: str) -> str:
    return str(HPARAMS / name)


class DemoError(ReportedError, ValueError):
    """A demo asked for a part or a system it does not have."""


TEACHERS = ("tea0", "tea1", "tea2")
# tea0 is the dataset's asr.yaml itself; the others are overlays of it.
TEACHER_YAML = {"tea0": "asr.yaml", "tea1": "tea1.yaml", "tea2": "tea2.yaml"}
STRATEGIES = ("average", "best", "weighted")
CIF_DISTILLATIONS = ("acd", "lrd", "hieradist")
# cif_low_resource: every CIF system again on a quarter of each training speaker's utterances (its own part,
# so that the regime can be trained alone: it compares only with itself).
PARTS = ("kd", "cif", "cif_low_resource")
DEFAULT_PARTS = ("kd", "cif")
DEFAULT_SEED = 1234  # the YAMLs' seed
# --ablations: ACD and HieraDist as the paper runs them, without the ramp of their weights that
# hparams/synth/cif_kd.yaml sets.
UNRAMPED = "--kd_ramp_updates=0"
# Part cif_low_resource: this share of each training speaker's utterances.
LOW_RESOURCE_FRACTION = 0.25
# ``--quick`` (what ``make demo`` runs). The KD models get their 4 epochs: the attentional decoder
# finds its alignment in the third (tea0's valid PER 155 -> 64 -> 12 -> 8 %, greedy), so fewer show
# no distillation (one epoch left teachers at 57-67 % test PER); after 4, tea0 4.0 % and the
# student 5.6 % test PER (2026-12-07). The CIF models 5 of the YAML's 12, with the LR schedule
# shortened to them (full LR until the encoder has found the alignment, about 1 000 updates, then
# the decay), so that they learn something (test TER < 80 %).
QUICK_EPOCHS, QUICK_CIF_EPOCHS = 4, 5
# The LM one epoch of its 100 000 sentences (valid perplexity 32.8 against 31.9 after two).
QUICK_CIF_OVERRIDES = ("--warmup_steps=250", "--hold_steps=750", "--decay_steps=300", "--lm_epochs=1")
# The quick demo trains no same-units control: at its share of the quick CIF time (4 epochs) the
# CTC/attention model has not found its alignment yet (114.55 % test TER, 185 s, 2026-12-07).


# The same-units control (hparams/synth/asr_wordpiece.yaml) gets about the CPU time of a CIF model: one of
# its epochs took 1.4x as long as a CIF epoch (43.7 s against 30.8 s, side by side, 2026-12-02).
CONTROL_EPOCHS_PER_CIF_EPOCH = 0.7


def control_epochs_for(cif_epochs: int) -> int:
    """The control's epochs for a CIF model's ``cif_epochs``.

    Example
    -------
    >>> control_epochs_for(8), control_epochs_for(1)
    (6, 1)
    """
    return max(1, round(CONTROL_EPOCHS_PER_CIF_EPOCH * cif_epochs))


def default_jobs() -> int:
    """Trainings run side by side: 2 on a machine with 2 or more cores (one
    thread each on 2 cores does 1.3× the work of one 2-thread training), else 1."""
    return 2 if available_cores() >= 2 else 1


def run_demo(output_folder: str, data_folder: str, epochs: Optional[int] = None, corpus_size: str = "small",
             extra: Sequence[str] = (), parts: Sequence[str] = DEFAULT_PARTS, cif_epochs: Optional[int] = None,
             lm_weights: Sequence[float] = LM_WEIGHTS, seeds: Sequence[int] = (DEFAULT_SEED,),
             store_top_k: Optional[int] = None, ablations: bool = False,
             jobs: Optional[int] = None, cif_extra: Sequence[str] = (),
             only: Optional[Sequence[str]] = None, control: bool = True) -> Dict[str, object]:
    """Run every step of ``parts``; return the summary (also written to ``summary.json``).

    Teachers and stores are trained once; every student and CIF system once
    per seed of ``seeds`` (folders ``<name>_s<seed>`` when there are several),
    and its summary entry carries each run and the mean and standard
    deviation over seeds. ``store_top_k``: also store the teachers' top-k
    outputs and distil ``student_weighted_top<k>`` from them, to compare
    with the full store. ``ablations``: also *best* with shared ties
    (``best_ties: average``), and ACD and HieraDist without the ramp of
    their weights (as the paper). ``jobs``: trainings run side by side
    (:func:`default_jobs`), each in its own process with its share of the
    cores and its output in ``<output_folder>/logs/<name>.log``. ``cif_extra``:
    overrides for the CIF recipes only (``--quick``: :data:`QUICK_CIF_OVERRIDES`).
    Part ``cif_low_resource``: every CIF system on a quarter of each training
    speaker's utterances (``<name>_low_resource``), with as many updates.
    ``only``: train only these of the parts' per-seed systems (students, CIF
    systems, the control); the teachers, stores and LMs they need still run.
    ``control``: part ``cif`` also trains the same-units control.
    """
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise DemoError(f"unknown demo part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    begin = time.time()
    os.makedirs(output_folder, exist_ok=True)
    # The corpus is made once, here, before jobs that read it run side by side.
    prepare_dataset("synth", data_folder, data_folder, size=corpus_size)
    data = [f"--data_folder={data_folder}", f"--corpus_size={corpus_size}", f"--output_root={output_folder}"]
    if importlib.util.find_spec("tensorboard") is not None:  # each run's curves: tensorboard --logdir <output_folder>
        data.append("--tensorboard=True")
    common = [*data, *([f"--number_of_epochs={epochs}"] if epochs else []), *extra]
    systems: Dict[str, Dict[str, object]] = {}
    timings: Dict[str, float] = {}
    jobs = jobs or default_jobs()
    # The same code trains other models and takes another time on another CPU: the record says which.
    summary: Dict[str, object] = {"systems": systems, "seconds": timings, "seeds": list(seeds),
                                  "machine": f"{machine_description()}, {jobs} training(s) side by side"}
    summary_path = os.path.join(output_folder, "summary.json")
    declared: List[str] = []  # systems in the order of the table, whatever order they finish in
    offered: List[str] = []  # every per-seed system of the parts, trained or left out by ``only``
    steps: Dict[str, List[Job]] = {"multi_teacher_kd": [], "cif_hieradist": []}  # each part's jobs, in order
    runs_of: Dict[str, Dict[str, Dict[str, object]]] = {}  # per-seed system -> seed -> its run's record
    cif_trained: Dict[str, List[str]] = {"full": [], "low_resource": []}  # each regime's CIF systems that train
    handlers: Dict[str, Callable[[object], None]] = {}

    def in_table_order() -> Dict[str, Dict[str, object]]:
        return {name: systems[name] for name in declared if name in systems}

    def save_progress() -> None:
        # After every system, so that a run stopped half-way keeps what it measured.
        write_summary({**summary, "systems": in_table_order(), "in_progress": True}, summary_path)

    def step(name: str, script: str, argv: List[str], after: Sequence[str] = (),
             handle: Callable[[object], None] = lambda result: None, part: Optional[str] = None) -> str:
        # ``script``: a recipe under recipes/, or an absolute path. The part whose start order the job
        # joins: its recipe's folder unless given.
        path = script if os.path.isabs(script) else recipe(script)
        steps[part or script.split("/")[0]].append(Job(name, path, argv, tuple(after)))
        handlers[name] = handle
        return name

    def system(name: str, kind: str, method: Dict[str, Optional[str]], script: str, argv: List[str],
               after: Sequence[str] = ()) -> str:
        """A system trained once (a teacher); its summary entry is its run's result."""
        declared.append(name)

        def record(result) -> None:
            systems[name] = {"kind": kind, **method, **result}
            save_progress()

        return step(name, script, argv, after, record)

    def system_per_seed(name: str, kind: str, method: Dict[str, Optional[str]], script: str, argv: List[str],
                        after: Sequence[str] = (), part: Optional[str] = None) -> List[str]:
        """A system trained once per seed; its entry (:func:`seed_statistics`) when every seed has finished."""
        offered.append(name)
        if only is not None and name not in only:
            return []
        declared.append(name)
        runs: Dict[str, object] = {}
        runs_of[name] = runs
        if kind == "cif":
            cif_trained[method.get("regime", "full")].append(name)

        def record(seed: int, result) -> None:
            runs[str(seed)] = result
            if len(runs) == len(seeds):
                systems[name] = {"kind": kind, **method, **seed_statistics({str(s): runs[str(s)] for s in seeds})}
                save_progress()

        names = []
        for seed in seeds:
            folder = name if len(seeds) == 1 else f"{name}_s{seed}"
            names.append(step(folder, script, [*argv, f"--seed={seed}", f"--experiment_name={folder}"], after,
                              lambda result, seed=seed: record(seed, result), part))
        return names

    def store(name: str, key: str, script: str, argv: List[str], after: Sequence[str] = ()) -> str:
        def record(path) -> None:
            summary[key] = os.path.abspath(path)

        return step(name, script, argv, after, record)

    valid_manifest = os.path.join(os.path.abspath(data_folder), "valid.csv")
    test_manifest = os.path.join(os.path.abspath(data_folder), "test.csv")

    def score_with_lm(name: str, lm_job: str, lm_folder: str) -> None:
        """For each seed's model of CIF system ``name``, a job after it and the LM: the LM weight
        chosen on valid from ``lm_weights`` with the CTC weight its recipe chose, the test scored
        with both (``hieradist_lobes/tuning.py``); jobs, so that they run side by side."""
        runs = runs_of[name]
        for seed in seeds:
            folder = name if len(seeds) == 1 else f"{name}_s{seed}"
            model_dir = os.path.join(os.path.abspath(output_folder), folder, "model")

            def record(result, seed: str = str(seed), model_dir: str = model_dir) -> None:
                run = runs[seed]
                if os.path.abspath(run["model_dir"]) != model_dir:
                    raise DemoError(f"{name} (seed {seed}) exported {run['model_dir']}, not {model_dir}")
                run["lm_weight"] = result["lm_weight"]
                run["valid_by_lm_weight"] = {f"{weight:g}": rate
                                             for weight, rate in result["valid_by_lm_weight"].items()}
                run["test_error_rate_lm"] = result["test_error_rate"]
                if name in systems:  # every seed trained: the entry's means and spreads again, with the LM's
                    systems[name].update(seed_statistics(runs))
                    save_progress()

            step(f"score_{folder}", str(ROOT / "hieradist_lobes" / "tuning.py"),
                 ["--model_dir", model_dir, "--valid_csv", valid_manifest, "--test_csv", test_manifest,
                  "--plm_path", synth_plm_path(), "--lm_folder", lm_folder, "--ctc_weights", "keep",
                  "--lm_weights", ",".join(f"{weight:g}" for weight in lm_weights)],
                 after=[folder, lm_job], handle=record, part="cif_hieradist")

    if "kd" in parts:
        teachers = [system(teacher, "teacher", {"strategy": None}, "multi_teacher_kd/train_teacher.py",
                           [synth_yaml(TEACHER_YAML[teacher]), *common]) for teacher in TEACHERS]
        teacher_store = store("save_teachers", "teacher_store", "multi_teacher_kd/save_teachers.py",
                              [synth_yaml("save_teachers.yaml"), *without_epochs(common)], after=teachers)
        system_per_seed("student_baseline", "student", {"strategy": None}, "multi_teacher_kd/train_teacher.py",
                        [synth_yaml("student.yaml"), *common])
        for strategy in STRATEGIES:
            system_per_seed(f"student_{strategy}", "student", {"strategy": strategy}, "multi_teacher_kd/train_kd.py",
                            [synth_yaml("train_kd.yaml"), f"--strategy={strategy}", *common], after=[teacher_store])
        if ablations:
            system_per_seed("student_best_ties_average", "student", {"strategy": "best"},
                            "multi_teacher_kd/train_kd.py",
                            [synth_yaml("train_kd.yaml"), "--strategy=best", "--best_ties=average", *common],
                            after=[teacher_store])
        if store_top_k:
            top_k_path = os.path.join(output_folder, f"teacher_store_top{store_top_k}")
            top_k = store("save_teachers_top_k", "teacher_store_top_k", "multi_teacher_kd/save_teachers.py",
                          [synth_yaml("save_teachers.yaml"), *without_epochs(common), f"--store_top_k={store_top_k}",
                           f"--store_path={top_k_path}"], after=teachers)
            system_per_seed(f"student_weighted_top{store_top_k}", "student", {"strategy": "weighted"},
                            "multi_teacher_kd/train_kd.py",
                            [synth_yaml("train_kd.yaml"), "--strategy=weighted", f"--teacher_store={top_k_path}",
                             *common], after=[top_k])

    if "cif" in parts:
        cif_common = [*data, *([f"--number_of_epochs={cif_epochs}"] if cif_epochs else []), *cif_extra, *extra]
        if not any(arg.startswith("--output_neurons") for arg in cif_common):
            cif_common.append(f"--output_neurons={cif_output_neurons(os.path.join(data_folder, 'train.csv'))}")
        # The PLM store first: it takes seconds, and the distilled systems wait for it.
        plm_store = store("save_plm_features", "plm_store", "cif_hieradist/save_plm_features.py",
                          [synth_yaml("cif_plm_features.yaml"), *without_epochs(cif_common)])
        system_per_seed("cif", "cif", {"distillation": "none"}, "cif_hieradist/train.py",
                        [synth_yaml("cif.yaml"), *cif_common])
        if control:  # the CTC/attention model on the CIF models' wordpieces, for a comparable CPU time
            control_epochs = [f"--number_of_epochs={control_epochs_for(cif_epochs)}"] if cif_epochs else []
            system_per_seed("ctc_attention_wordpiece", "control", {"strategy": None},
                            "multi_teacher_kd/train_teacher.py",
                            [synth_yaml("asr_wordpiece.yaml"), *data, *control_epochs, *extra,
                             *[arg for arg in cif_common if arg.startswith("--output_neurons")]], part="cif_hieradist")
        for distillation in CIF_DISTILLATIONS:
            system_per_seed(f"cif_{distillation}", "cif", {"distillation": distillation}, "cif_hieradist/train_kd.py",
                            [synth_yaml("cif_kd.yaml"), f"--distillation={distillation}", *cif_common],
                            after=[plm_store])
        if ablations:
            for distillation in ("acd", "hieradist"):
                system_per_seed(f"cif_{distillation}_noramp", "cif", {"distillation": distillation},
                                "cif_hieradist/train_kd.py",
                                [synth_yaml("cif_kd.yaml"), f"--distillation={distillation}",
                                 UNRAMPED, *cif_common], after=[plm_store])
        step("lm", "cif_hieradist/train_lm.py", [synth_yaml("cif.yaml"), *without_epochs(cif_common)],
             handle=lambda result: summary.__setitem__("lm", result))
        lm_folder = os.path.join(os.path.abspath(output_folder), "lm", "model")  # cif.yaml's lm_dir
        for name in cif_trained["full"]:
            score_with_lm(name, "lm", lm_folder)
    if "cif_low_resource" in parts:
        # A quarter of each training speaker's utterances (the same voices), as many updates as the full
        # regime (4x the epochs: the LR schedule, in updates, is unchanged); its own vocabulary (the
        # subset's PLM tokens), PLM store and LM.
        subset = speaker_subset(os.path.join(data_folder, "train.csv"),
                                os.path.join(output_folder, "low_resource", "train.csv"), LOW_RESOURCE_FRACTION)
        epochs = cif_epochs or int(plain_value(synth_yaml("cif.yaml"), "number_of_epochs"))
        splits = [f"--{split}_csv={os.path.join(os.path.abspath(data_folder), f'{split}.csv')}"
                  for split in ("valid", "test")]
        low = [*data, "--dataset=csv", f"--train_csv={subset}", *splits, *cif_extra, *extra,
               f"--number_of_epochs={round(epochs / LOW_RESOURCE_FRACTION)}",
               f"--output_neurons={cif_output_neurons(subset)}"]
        low_store_path = os.path.join(output_folder, "plm_store_low_resource")
        low_store = store("save_plm_features_low_resource", "plm_store_low_resource",
                          "cif_hieradist/save_plm_features.py",
                          [synth_yaml("cif_plm_features.yaml"), *without_epochs(low),
                           f"--store_path={low_store_path}"])
        low_method = {"regime": "low_resource"}
        system_per_seed("cif_low_resource", "cif", {"distillation": "none", **low_method},
                        "cif_hieradist/train.py", [synth_yaml("cif.yaml"), *low])
        for distillation in CIF_DISTILLATIONS:
            system_per_seed(f"cif_{distillation}_low_resource", "cif", {"distillation": distillation, **low_method},
                            "cif_hieradist/train_kd.py",
                            [synth_yaml("cif_kd.yaml"), f"--distillation={distillation}", *low,
                             f"--teacher_store={low_store_path}"], after=[low_store])
        low_lm_output = os.path.join(os.path.abspath(output_folder), "lm_low_resource")
        step("lm_low_resource", "cif_hieradist/train_lm.py",
             [synth_yaml("cif.yaml"), *without_epochs(low), f"--lm_output_folder={low_lm_output}"],
             handle=lambda result: summary.__setitem__("lm_low_resource", result))
        for name in cif_trained["low_resource"]:
            score_with_lm(name, "lm_low_resource", os.path.join(low_lm_output, "model"))

    left = [name for name in (only or ()) if name not in offered]
    if left:
        raise DemoError(f"no system {', '.join(left)} in the parts {', '.join(parts)}"
                         f"{' with the ablations' if ablations else ''}; they train: {', '.join(offered)}")

    def finished(job: Job, result, seconds: float) -> None:
        timings[job.name] = seconds
        handlers[job.name](result)

    # Ready jobs start in this order: the two parts alternate, so that the long CIF trainings start
    # early and the short KD ones keep both workers busy at the end.
    run_jobs(alternate(*steps.values()), jobs, os.path.join(output_folder, "logs"), finished)
    summary["systems"] = systems = in_table_order()
    summary["test_manifest"] = test_manifest
    check_students(systems, read_manifest(test_manifest)[0]["wav"])
    check_cif_models(systems, read_manifest(test_manifest)[0]["wav"])
    summary["total_minutes"] = round((time.time() - begin) / 60, 1)
    summary = write_summary(summary, summary_path)
    plot_summary(summary, output_folder, os.path.join(output_folder, "summary.png"))
    print(format_table(summary))
    return summary


def alternate(*lists: Sequence) -> List:
    """The items of ``lists`` taken in turn, each list's order kept.

    Example
    -------
    >>> alternate([1, 2, 3], ["a"], [])
    [1, 'a', 2, 3]
    """
    return [item for row in itertools.zip_longest(*lists, fillvalue=_GAP) for item in row if item is not _GAP]


_GAP = object()
SCORES = ("valid_error_rate", "test_error_rate", "test_error_rate_lm", "test_ctc_head_error_rate",
          "test_error_rate_no_ctc")


def seed_statistics(runs: Dict[str, Dict[str, object]]) -> Dict[str, object]:
    """One system's entry from its runs (seed → recipe result): the runs, and
    for each score the mean, the sample standard deviation over seeds (0 for
    one seed) and the mean again under the plain name; ``model_dir`` and
    ``params`` are the first seed's.

    Example
    -------
    >>> entry = seed_statistics({"1": {"test_error_rate": 8.0, "model_dir": "a", "params": 5},
    ...                          "2": {"test_error_rate": 10.0, "model_dir": "b", "params": 5}})
    >>> entry["test_error_rate"], entry["test_error_rate_mean"], entry["test_error_rate_std"], entry["seeds"]
    (9.0, 9.0, 1.41, [1, 2])
    """
    first = next(iter(runs.values()))
    entry: Dict[str, object] = {"seeds": [int(seed) for seed in runs], "runs": runs,
                                "model_dir": first["model_dir"], "params": first["params"]}
    for score in SCORES:
        values = [run[score] for run in runs.values() if run.get(score) is not None]
        if len(values) != len(runs):
            continue
        mean = statistics.fmean(values)
        entry.update({score: round(mean, 2), f"{score}_mean": round(mean, 2),
                      f"{score}_std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0})
    return entry


def merge_previous(summary: Dict[str, object], path: str) -> Dict[str, object]:
    """Keep what an earlier run wrote to ``path`` for the systems and facts
    this run did not redo (e.g. ``--parts cif`` after a full demo)."""
    if not os.path.isfile(path):
        return summary
    with open(path, encoding="utf-8") as handle:
        previous = json.load(handle)
    merged = {**previous, **{k: v for k, v in summary.items() if k not in ("systems", "seconds")}}
    # This run's systems in this run's order, after those it did not redo.
    kept = {name: system for name, system in previous.get("systems", {}).items() if name not in summary["systems"]}
    merged["systems"] = {**kept, **summary["systems"]}
    merged["seconds"] = {**previous.get("seconds", {}), **summary["seconds"]}
    return merged


def write_summary(summary: Dict[str, object], path: str) -> Dict[str, object]:
    """Merge ``summary`` with what ``path`` holds (:func:`merge_previous`) and
    write it atomically; return the merged summary. A summary with
    ``in_progress`` is a run's partial record: ``total_minutes`` is left out
    until the run ends."""
    merged = merge_previous(summary, path)
    if summary.get("in_progress"):
        merged.pop("total_minutes", None)
    else:
        merged.pop("in_progress", None)
    write_json(path, merged, indent=2)
    return merged


def without_epochs(arguments: Sequence[str]) -> List[str]:
    """The stores and the LM have no ``number_of_epochs``: drop that override."""
    return [a for a in arguments if not a.startswith("--number_of_epochs")]


def check_students(systems: Dict[str, Dict[str, object]], wav: str) -> None:
    """Load every student folder (and the CIF models' same-units control) as
    SpeechBrain would and transcribe ``wav``."""
    from speechbrain.inference.ASR import EncoderDecoderASR

    for system in systems.values():
        if system["kind"] not in ("student", "control"):
            continue
        asr = EncoderDecoderASR.from_hparams(source=system["model_dir"], savedir=system["model_dir"])
        system["example_transcription"] = asr.transcribe_file(wav)


def synth_plm_path() -> str:
    """The folder of the PLM of ``hparams/synth/cif.yaml`` (all-MiniLM-L6-v2, from its wheel)."""
    from hieradist_lobes.plm import minilm_path

    return str(minilm_path())


@functools.lru_cache(maxsize=1)  # loaded once per process (the CIF vocabulary)
def synth_plm_splitter():
    """Transcripts split into the tokens of the PLM of ``hparams/synth/cif.yaml`` (all-MiniLM-L6-v2)."""
    from hieradist_lobes.plm import PLMSplitter, PLMTokenizer

    return PLMSplitter(PLMTokenizer(synth_plm_path()), "wrd")


def cif_output_neurons(train_manifest: str) -> int:
    """The CIF models' output size on this corpus: the PLM tokens of its training transcripts
    (what the recipes check ``output_neurons`` against). ``hparams/synth/cif.yaml``'s 508 is the
    small and medium corpora's; the tiny one has fewer tokens."""
    from hieradist_lobes.plm import plm_tokenizer

    return len(plm_tokenizer(train_manifest, synth_plm_splitter()))


def check_cif_models(systems: Dict[str, Dict[str, object]], wav: str) -> None:
    """Load every CIF folder (the first seed's) with :class:`CIFASR` and
    transcribe ``wav``, with the time of each token. (Each seed's LM weight
    and its test score with the LM come from the ``score_*`` jobs.)"""
    from hieradist_lobes.inference import CIFASR

    for system in systems.values():
        if system["kind"] != "cif":
            continue
        asr = CIFASR.from_hparams(source=system["model_dir"], savedir=system["model_dir"])
        system["example_transcription"] = asr.transcribe_file(wav)
        system["example_timestamps"] = asr.transcribe_file_with_timestamps(wav)


def format_table(summary: Dict[str, object]) -> str:
    """The summary as a text table (error rates: PER for the KD systems,
    token error rate for the CIF systems and their same-units control; +LM:
    with shallow fusion; CTC head: the CIF model's CTC head alone, greedy);
    mean ± standard deviation over seeds where a system ran with several."""

    def score(system: Dict[str, object], name: str) -> str:
        value = system.get(name)
        if value is None:
            return "-"
        spread = system.get(f"{name}_std")
        return f"{value:.2f}" + (f" ± {spread:.2f}" if spread and len(system.get("seeds", [])) > 1 else "")

    width = max([24, *(len(name) + 2 for name in summary["systems"])])
    lines = [f"{'system':<{width}}{'kind':<9}{'method':<11}{'params':>10}{'seeds':>6}"
             f"{'valid ER':>16}{'test ER':>16}{'test+LM':>16}{'CTC head':>16}"]
    for name, system in summary["systems"].items():
        method = system.get("strategy") or system.get("distillation") or "-"
        lines.append(f"{name:<{width}}{system['kind']:<9}{method:<11}{system['params']:>10,}"
                     f"{len(system.get('seeds', [])) or 1:>6}{score(system, 'valid_error_rate'):>16}"
                     f"{score(system, 'test_error_rate'):>16}{score(system, 'test_error_rate_lm'):>16}"
                     f"{score(system, 'test_ctc_head_error_rate'):>16}")
    return "\n".join(lines)


def read_history(model_dir: str, sampled: bool = False) -> List[Dict[str, float]]:
    """Statistics written by the Brain (``history.jsonl``): per epoch, or with
    ``sampled`` the per-update loss terms and encoder gradient norms."""
    path = os.path.join(os.path.dirname(model_dir), "history.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    return [entry for entry in entries if ("update" in entry) == sampled]


# Systems whose per-term encoder gradient norms the chart shows (first seed).
GRADIENT_PANELS = ("cif_hieradist", "student_weighted")


def plot_summary(summary: Dict[str, object], output_folder: str, path: str) -> None:
    """The test error rates (mean ± std over seeds), the validation curves
    and the loss terms' encoder gradient norms, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    systems = summary["systems"]
    figure, panels = plt.subplots(2, 2, figsize=(15, 10))
    (bars, curves), norm_panels = panels[0], panels[1]
    names = list(systems)

    def colour(system):
        if system["kind"] == "teacher":
            return "tab:blue"
        if system["kind"] == "cif":
            return "tab:olive" if system.get("distillation") in (None, "none") else "tab:green"
        if system["kind"] == "control":
            return "tab:purple"
        return "tab:grey" if system.get("strategy") is None else "tab:orange"

    colours = [colour(systems[n]) for n in names]
    rates = [systems[n]["test_error_rate"] for n in names]
    spreads = [systems[n].get("test_error_rate_std", 0.0) for n in names]
    bars.bar(names, rates, color=colours, yerr=spreads, capsize=3)
    for index, (rate, spread) in enumerate(zip(rates, spreads)):
        bars.text(index, rate + spread, f"{rate:.1f}", ha="center", va="bottom", fontsize=8)
    seeds = len(summary.get("seeds", [])) or 1
    bars.set_ylabel("test error rate (%): PER; CIF and control: token ER")
    bars.set_title("Test speakers (unseen voices)" + (f": mean ± std over {seeds} seeds" if seeds > 1 else ""))
    bars.set_xticks(range(len(names)), names, rotation=40, ha="right")
    line_colours = plt.get_cmap("tab20").colors
    for index, name in enumerate(names):
        history = read_history(systems[name]["model_dir"])
        if history:
            curves.plot([h["epoch"] for h in history], [h["valid_error_rate"] for h in history], marker="o",
                        markersize=3, label=name, color=line_colours[index % len(line_colours)],
                        linestyle="--" if systems[name]["kind"] == "teacher" else "-")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_xlabel("epoch")
    curves.set_ylabel("valid error rate (%, greedy decoding)")
    curves.set_title("Training curves" + (" (first seed)" if seeds > 1 else ""))
    curves.set_ylim(bottom=0)
    curves.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for panel, name in zip(norm_panels, GRADIENT_PANELS):
        sampled = read_history(systems[name]["model_dir"], sampled=True) if name in systems else []
        terms = sorted({key[len("grad_norm_"):] for entry in sampled for key in entry if key.startswith("grad_norm_")})
        for term in terms:
            points = [(entry["update"], entry[f"grad_norm_{term}"]) for entry in sampled
                      if entry.get(f"grad_norm_{term}", 0) > 0]
            if points:
                panel.plot(*zip(*points), label=term, linewidth=1)
        panel.set_title(f"{name}: each loss term's gradient norm\non the encoder (before clipping)")
        panel.set_xlabel("update")
        if terms:
            panel.set_yscale("log")
            panel.legend(fontsize=8)
        else:
            panel.text(0.5, 0.5, "no gradient norms logged", ha="center", transform=panel.transAxes)
    figure.tight_layout()
    with staged_file(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point (``make demo``)."""
    parser = argparse.ArgumentParser(description="Multi-teacher distillation demo on the built-in corpus.")
    parser.add_argument("--output_folder", default="results/demo", type=path_argument)
    parser.add_argument("--data_folder", default="data/synth_small", type=path_argument)
    parser.add_argument("--corpus_size", default="small", choices=["tiny", "small", "medium"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per KD model (default: the YAML's)")
    parser.add_argument("--cif_epochs", type=int, default=None, help="epochs per CIF model (default: the YAML's)")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help="comma-separated parts to run: kd, cif, cif_low_resource (every CIF system on a quarter "
                             "of each training speaker's utterances, as many updates) "
                             f"(default: {','.join(DEFAULT_PARTS)})")
    parser.add_argument("--lm_weights", default=",".join(f"{weight:g}" for weight in LM_WEIGHTS),
                        help="LM weights of the CIF shallow fusion to choose from on the validation set")
    parser.add_argument("--seeds", default=str(DEFAULT_SEED),
                        help="comma-separated seeds: every student and CIF system is trained once per seed")
    parser.add_argument("--ablations", action="store_true",
                        help="also best with shared ties, and ACD/HieraDist without the ramp of their weights")
    parser.add_argument("--systems", default=None,
                        help="comma-separated: train only these systems of the parts (e.g. cif,cif_acd_noramp); "
                             "the teachers, stores and LMs they need still run (default: every system)")
    parser.add_argument("--store_top_k", type=int, default=None,
                        help="also distil student_weighted_top<k> from a top-k teacher store (vs the full one)")
    parser.add_argument("--quick", action="store_true",
                        help=f"fewer epochs ({QUICK_EPOCHS} per KD model, {QUICK_CIF_EPOCHS} per CIF model with "
                             "the LR schedule shortened to them) "
                             "unless --epochs / --cif_epochs are given, and no same-units control")
    parser.add_argument("--jobs", type=int, default=None,
                        help="trainings side by side, each in its own process with its share of the cores, output "
                             "in <output_folder>/logs/ (default: 2 on 2 or more cores; 1: one after another, "
                             "in this process, output here)")
    args, extra = parser.parse_known_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs needs at least 1")
    parts = [part for part in args.parts.split(",") if part]
    if not parts or any(part not in PARTS for part in parts):
        parser.error(f"--parts {args.parts!r}: give one or more of {', '.join(PARTS)}, comma-separated")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        parser.error(f"--seeds {args.seeds!r}: give integers, comma-separated (e.g. 1234,1235,1236)")
    try:
        lm_weights = [float(weight) for weight in args.lm_weights.split(",") if weight.strip()]
    except ValueError:
        lm_weights = []
    if not lm_weights or any(not weight >= 0 for weight in lm_weights):
        parser.error(f"--lm_weights {args.lm_weights!r}: give non-negative numbers, comma-separated (e.g. 0,0.2)")
    cif_extra: Sequence[str] = ()
    if args.quick:
        args.epochs = args.epochs or QUICK_EPOCHS
        if not args.cif_epochs:
            args.cif_epochs, cif_extra = QUICK_CIF_EPOCHS, QUICK_CIF_OVERRIDES
    run_demo(args.output_folder, args.data_folder, args.epochs, args.corpus_size, extra,
             parts=parts, cif_epochs=args.cif_epochs, lm_weights=lm_weights, seeds=seeds,
             store_top_k=args.store_top_k, ablations=args.ablations, jobs=args.jobs, cif_extra=cif_extra,
             only=[name for name in args.systems.split(",") if name] if args.systems is not None else None,
             control=not args.quick)


if __name__ == "__main__":
    run_command(main)  # a failed job or a user's mistake ends with its message
