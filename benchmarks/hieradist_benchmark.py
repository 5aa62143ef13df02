#!/usr/bin/env python3
"""The cost of HieraDist in a CIF training step (results go to docs/benchmarks.md).

    python benchmarks/hieradist_benchmark.py          # after make demo-full: its corpus and PLM store
    python benchmarks/hieradist_benchmark.py --output_root results/demo --steps 60 --json hieradist.json

A CIF+HieraDist step (PLM features read by utterance ID where the YAML's
``num_workers`` says, ACD and LRD on top of the CIF losses) against a CIF baseline step,
same model initialisation, same batches in the same order, their steps taken
in turn so that a change of the machine's speed falls on both
(:mod:`step_timing`). Figure: ``hieradist_step_overhead_pct``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.step_timing import Setting, interleaved_step_seconds, overhead  # noqa: E402
from hieradist_lobes.brains import CIFBrain, HieraDistBrain  # noqa: E402
from hieradist_lobes.data import prepare_manifests  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.data.pipelines import PLM_KEYS, PLMFeatureItems, asr_datasets, train_loader_options  # noqa: E402
from hieradist_lobes.hparams import load_hparams  # noqa: E402
from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, plm_tokenizer  # noqa: E402
from hieradist_lobes.teacher_store import TeacherStore  # noqa: E402
from hieradist_lobes.threads import available_cores, machine_description  # noqa: E402
from hieradist_lobes.tokens import check_vocabulary  # noqa: E402


def cif_setting(hparams_file: str, overrides: Dict[str, object], distilled: bool) -> Setting:
    """A fresh CIF model (seed 1234), with HieraDist or without, and its training set and loader options."""
    torch.manual_seed(1234)
    hparams = load_hparams(hparams_file, overrides).hparams
    manifests = prepare_manifests(hparams)
    split_labels = PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])
    tokenizer = plm_tokenizer(manifests["train"], split_labels)
    check_vocabulary(tokenizer, hparams["output_neurons"], hparams_file)  # as the recipes do
    hparams["tokenizer"] = tokenizer
    store_options = {}
    if distilled:
        store = TeacherStore(hparams["teacher_store"], splits=["train"])
        store_options = {"teacher_store": store, "teacher_items": PLMFeatureItems(store), "teacher_keys": PLM_KEYS}
    train_set = asr_datasets(hparams, manifests, tokenizer, split_labels, **store_options)["train"]
    brain_class = HieraDistBrain if distilled else CIFBrain
    brain = brain_class(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                        run_opts={"device": "cpu"}, checkpointer=None)
    return brain, train_set, train_loader_options(hparams, train_set)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hparams", default="hparams/synth/cif_kd.yaml")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--output_root", default="results/demo", help="where make demo-full wrote plm_store")
    parser.add_argument("--steps", type=int, default=120, help="timed steps of each setting")
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    store = os.path.join(args.output_root, "plm_store")
    if not os.path.isdir(store):
        parser.error(f"no PLM store in {store}: run make demo-full first, or give --output_root")
    # Batches drawn at random (a fixed seed, the same for both): the sorted order would time only the shortest.
    overrides = {"data_folder": args.data_folder, "output_root": args.output_root, "distillation": "hieradist",
                 "train_sorting": "random"}
    times = interleaved_step_seconds({"baseline": cif_setting(args.hparams, overrides, False),
                                      "hieradist": cif_setting(args.hparams, overrides, True)}, args.steps)
    figures = overhead(times["baseline"], times["hieradist"])
    results = {"machine": f"{machine_description()}, {args.threads} threads",
               "steps": len(times["baseline"]), **figures,
               "hieradist_step_overhead_pct": figures["overhead_pct"]}
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)


if __name__ == "__main__":
    main()
