#!/usr/bin/env python3
"""Benchmarks of multi-teacher distillation (results go to docs/benchmarks.md).

    python benchmarks/kd_benchmark.py            # after make demo-full
    python benchmarks/kd_benchmark.py --store results/demo/teacher_store \\
        --hparams hparams/synth/train_kd.yaml --data_folder data/synth_small --output_root results/demo --json kd.json

Measures, on this machine:

1. **Store size** per hour of audio per teacher for each storage option
   (float32, float16, float16 top-k), by rewriting the utterances of an
   existing store in each format.
2. **Reading throughput**: utterances per second that a DataLoader delivers
   with audio and teacher outputs (read by ID in 0, 1 or 2 worker processes).
3. **What the store's checksums cost**: reading every utterance of a split
   in random order, from the store and from a copy written without checksums,
   passes taken in turn (``checksum_read``).
4. **KD step time**: one training step of the distilled student
   (DistillationBrain, the store read where the YAML's ``num_workers`` says) against a
   plain step of the same student (CTCAttentionBrain), on the same batches, their
   steps taken in turn (:mod:`step_timing`): ``kd_step_overhead_pct``; and the same
   distilled step reading the copy without checksums: ``checksum_step_overhead_pct``.

With no arguments it reads what ``make demo-full`` wrote (results/demo).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.step_timing import Setting, interleaved_step_seconds, overhead  # noqa: E402
from hieradist_lobes.data import prepare_dataset  # noqa: E402
from hieradist_lobes.data.pipelines import asr_dataset  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.hparams import load_hparams  # noqa: E402
from hieradist_lobes.teacher_store import StoreMetadata, TeacherStore, TeacherStoreWriter, copy_store  # noqa: E402
from hieradist_lobes.threads import available_cores, machine_description  # noqa: E402


def store_sizes(store_path: str, utterances: int) -> List[Dict[str, object]]:
    """MiB per hour of audio per teacher for each storage option."""
    source = TeacherStore(store_path, splits=["train"])
    ids = sorted(source.ids())[:utterances]
    records = [(utt, source.get(utt)) for utt in ids]
    hours = sum(record.duration for _, record in records) / 3600
    teachers = source.metadata.num_teachers
    results = []
    options = [("float32", 0, None), ("float16", 0, None), ("float16", 0, "gzip"), ("float16", 10, None),
               ("float16", 5, None), ("float16", 1, None)]
    for dtype, top_k, compression in options:
        folder = tempfile.mkdtemp(prefix="store-bench-")
        try:
            meta = StoreMetadata(labels=source.metadata.labels, teachers=source.metadata.teachers,
                                 frame_rate=source.metadata.frame_rate, dtype=dtype, top_k=top_k)
            with TeacherStoreWriter(folder, "train", meta, part_size=10**9, compression=compression) as writer:
                for utt, record in records:
                    writer.add(utt, record)
            size = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder)
                       for name in names)
        finally:
            shutil.rmtree(folder)
        results.append({"dtype": dtype, "top_k": top_k or "full", "compression": compression or "none",
                        "MiB_per_hour_per_teacher": round(size / 2**20 / hours / teachers, 2)})
    return results


def read_throughput(store_path: str, manifest: str, unit: str, tokenizer, utterances: int) -> List[Dict[str, object]]:
    """Utterances per second delivered by a DataLoader reading audio + teacher outputs
    (after the first batch, so that worker start-up is not counted)."""
    from speechbrain.dataio.batch import PaddedBatch

    store = TeacherStore(store_path, splits=["train"])
    dataset = asr_dataset(manifest, tokenizer, unit, "random", teacher_store=store)
    results = []
    for workers in (0, 1, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers,
                                             collate_fn=PaddedBatch)
        start, seen = None, 0
        for batch in loader:
            if start is None:  # worker start-up is not throughput
                start = time.time()
                continue
            seen += len(batch.id)
            if seen >= utterances:
                break
        results.append({"num_workers": workers, "utterances_per_second": round(seen / (time.time() - start), 1)})
    return results


def unchecked_copy(store_path: str) -> str:
    """The store rewritten without checksums, in a temporary folder (the caller removes it)."""
    folder = tempfile.mkdtemp(prefix="store-unchecked-")
    copy_store(store_path, folder, progress=False, checksums=False)
    return folder


def checksum_read(store_path: str, unchecked_path: str, passes: int = 5) -> Dict[str, object]:
    """Milliseconds per utterance for :meth:`TeacherStore.get` in random order, with and without
    checksums, passes taken in turn (the first pass of each, which opens the parts, not counted)."""
    import random

    stores = {"checksums": TeacherStore(store_path, splits=["train"]),
              "no_checksums": TeacherStore(unchecked_path, splits=["train"])}
    ids = sorted(stores["checksums"].ids())
    order = random.Random(0).sample(ids, len(ids))
    seconds: Dict[str, List[float]] = {name: [] for name in stores}
    for index in range(passes + 1):
        for name, store in stores.items():
            start = time.perf_counter()
            for utt in order:
                store.get(utt)
            if index:
                seconds[name].append(time.perf_counter() - start)
    per_utterance = {name: 1000 * min(values) / len(order) for name, values in seconds.items()}
    return {"utterances": len(order), "passes": passes,
            "ms_per_utterance": {name: round(value, 4) for name, value in per_utterance.items()},
            "overhead_pct": round(100 * (per_utterance["checksums"] / per_utterance["no_checksums"] - 1), 1)}


def student_setting(hparams_file: str, overrides: Dict[str, object], distilled: bool,
                    store_path: Optional[str] = None) -> Setting:
    """A fresh CTC/attention model (seed 1234) of ``hparams_file``, distilled from the YAML's
    ``teacher_store`` (or ``store_path``) or plain, and its training set and loader options."""
    from hieradist_lobes.brains import CTCAttentionBrain, DistillationBrain
    from hieradist_lobes.data.pipelines import train_loader_options
    from hieradist_lobes.tokens import check_vocabulary, make_tokenizer

    torch.manual_seed(1234)  # the same initial student for every setting
    hparams = load_hparams(hparams_file, {**overrides, **({"teacher_store": store_path} if store_path else {})}
                           ).hparams
    manifests = prepare_dataset(hparams["dataset"], hparams["data_folder"], hparams["manifest_folder"])
    tokenizer = make_tokenizer(hparams, manifests)
    check_vocabulary(tokenizer, hparams["output_neurons"], hparams_file)  # as the recipes do
    hparams["tokenizer"] = tokenizer
    store = TeacherStore(hparams["teacher_store"], splits=["train"]) if distilled else None
    train_set = asr_dataset(manifests["train"], tokenizer, hparams["unit"], "random", teacher_store=store)
    brain_class = DistillationBrain if distilled else CTCAttentionBrain
    brain = brain_class(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                        run_opts={"device": "cpu"}, checkpointer=None)
    return brain, train_set, train_loader_options(hparams, train_set)


def kd_step_time(hparams_file: str, overrides: Dict[str, object], steps: int,
                 unchecked_path: Optional[str] = None) -> Dict[str, object]:
    """Seconds per training step, distilled (3 teachers from the store, read as the
    recipe's loader reads them) vs plain (the same student without the store), on the same
    batches, steps taken in turn (:mod:`step_timing`); with ``unchecked_path``, the
    distilled step reading that store (no checksums) too."""
    settings = {"plain": student_setting(hparams_file, overrides, False),
                "distilled": student_setting(hparams_file, overrides, True)}
    if unchecked_path:
        settings["distilled_no_checksums"] = student_setting(hparams_file, overrides, True, unchecked_path)
    times = interleaved_step_seconds(settings, steps)
    result = {"steps": steps, **overhead(times["plain"], times["distilled"])}
    if unchecked_path:
        result["checksums"] = overhead(times["distilled_no_checksums"], times["distilled"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="results/demo/teacher_store", help="an existing teacher store")
    parser.add_argument("--hparams", default="hparams/synth/train_kd.yaml")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--output_root", default="results/demo")
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--steps", type=int, default=120, help="timed steps of each setting")
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not os.path.isdir(args.store):
        parser.error(f"no teacher store in {args.store}: run make demo-full first, or give --store")

    from hieradist_lobes.tokens import check_vocabulary, make_tokenizer

    # Batches drawn at random (a fixed seed, the same for both): a sorted order would time only the shortest.
    overrides = {"data_folder": args.data_folder, "output_root": args.output_root, "teacher_store": args.store,
                 "train_sorting": "random"}
    hparams = load_hparams(args.hparams, overrides).hparams
    manifests = prepare_dataset(hparams["dataset"], hparams["data_folder"], hparams["manifest_folder"])
    tokenizer = make_tokenizer(hparams, manifests)
    check_vocabulary(tokenizer, hparams["output_neurons"], args.hparams)
    unchecked = unchecked_copy(args.store)
    try:
        step = kd_step_time(args.hparams, overrides, args.steps, unchecked)
        reading = checksum_read(args.store, unchecked)
    finally:
        shutil.rmtree(unchecked)
    results = {
        "machine": f"{machine_description()}, {torch.get_num_threads()} threads",
        "kd_step_overhead_pct": step["overhead_pct"],
        "checksum_step_overhead_pct": step["checksums"]["overhead_pct"],
        "checksum_read": reading,
        "store_size": store_sizes(args.store, args.utterances),
        "read_throughput": read_throughput(args.store, manifests["train"], hparams["unit"], tokenizer,
                                           args.utterances),
        "kd_step": step,
    }
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)


if __name__ == "__main__":
    main()
