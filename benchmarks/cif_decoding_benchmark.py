#!/usr/bin/env python3
"""Decoding speed of a trained CIF model on CPU: real-time factor (RTF).

    python benchmarks/cif_decoding_benchmark.py            # after make demo-full: its CIF+LRD model and LM
    python benchmarks/cif_decoding_benchmark.py --model_dir results/demo/cif/model \\
        --manifest data/synth_small/test.csv --lm_dir results/demo/lm/model --json decoding.json

RTF = processing seconds / audio seconds (lower is faster; 0.1 = ten times
faster than real time), for each beam size, one utterance at a time
(``transcribe_file``, what a user calls) and in padded batches
(``transcribe_batch``), with and without LM shallow fusion, and without and
with the CTC head's prefix scores (joint decoding, ``--ctc_weight``).  Also
reports the share of the time spent in the encoder + CIF versus the beam
search.  ``beam10_lm_over_greedy``: the time of beam 10 with LM fusion over
the time of greedy decoding without LM, same model and utterances (the larger
of the two batch sizes' ratios); ``beam10_lm_ctc_over_greedy``: the same with
the CTC scores as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

import torch
from speechbrain.utils.data_utils import batch_pad_right

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hieradist_lobes.data.manifest import read_manifest  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.inference import CIFASR  # noqa: E402


def load(model_dir: str, beam_size: int, lm_dir: Optional[str], lm_weight: float, ctc_weight: float) -> CIFASR:
    overrides: Dict[str, object] = {"beam_size": beam_size, "ctc_weight_decode": ctc_weight}
    if lm_dir:
        overrides.update(lm_folder=lm_dir, lm_weight=lm_weight)
    return CIFASR.from_hparams(source=model_dir, savedir=model_dir, overrides=overrides)


def measure(asr: CIFASR, signals: List[torch.Tensor], batch_size: int) -> Dict[str, float]:
    """Seconds for decoding all signals, and the encoder + CIF part of it."""
    encode_seconds = 0.0
    start = time.perf_counter()
    for first in range(0, len(signals), batch_size):
        wavs, lens = batch_pad_right(signals[first:first + batch_size])
        tick = time.perf_counter()
        with torch.no_grad():
            asr.mods.model.cif(asr.encode_batch(wavs, lens), lens)
        encode_seconds += time.perf_counter() - tick
        asr.transcribe_batch(wavs, lens)
    total = time.perf_counter() - start
    # transcribe_batch encodes again: subtract the separately measured encoding once.
    return {"seconds": total - encode_seconds, "encode_seconds": encode_seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default="results/demo/cif_lrd/model", help="a CIF model folder")
    parser.add_argument("--manifest", default="data/synth_small/test.csv", help="utterances to decode")
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--beam_sizes", default="1,5,10")
    parser.add_argument("--batch_sizes", default="1,16")
    parser.add_argument("--lm_dir", default="results/demo/lm/model", help="an LM folder; 'none' for no LM")
    parser.add_argument("--lm_weight", type=float, default=0.3)
    parser.add_argument("--ctc_weight", type=float, default=0.5, help="CTC weight of the joint decoding runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.lm_dir == "none":
        args.lm_dir = None
    for path in (args.model_dir, args.manifest, args.lm_dir):
        if path and not os.path.exists(path):
            parser.error(f"{path} does not exist: run make demo-full first, or name your own with the options")

    from speechbrain.dataio.dataio import read_audio

    rows = read_manifest(args.manifest)[: args.utterances]
    signals = [read_audio(row["wav"]) for row in rows]
    audio_seconds = sum(len(s) for s in signals) / 16000.0
    results = []
    for ctc_weight in (0.0, args.ctc_weight) if args.ctc_weight else (0.0,):
        for lm_dir in [None, args.lm_dir] if args.lm_dir else [None]:
            for beam in [int(b) for b in args.beam_sizes.split(",")]:
                asr = load(args.model_dir, beam, lm_dir, args.lm_weight, ctc_weight)
                measure(asr, signals[:2], 1)  # warm-up
                for batch in [int(b) for b in args.batch_sizes.split(",")]:
                    timing = measure(asr, signals, batch)
                    results.append({"beam_size": beam, "batch_size": batch, "lm": bool(lm_dir),
                                    "ctc_weight": ctc_weight, "rtf": round(timing["seconds"] / audio_seconds, 4),
                                    "encoder_cif_share": round(timing["encode_seconds"] / timing["seconds"], 3)})
    print(f"{len(rows)} utterances, {audio_seconds:.1f} s of audio, {args.threads} threads, model {args.model_dir}\n")
    print("| beam | batch | LM | CTC weight | RTF | encoder+CIF share |")
    print("|---:|---:|:---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['beam_size']} | {r['batch_size']} | {'yes' if r['lm'] else 'no'} | {r['ctc_weight']:g} | "
              f"{r['rtf']:.4f} | {100 * r['encoder_cif_share']:.0f} % |")
    figures = {"utterances": len(rows), "audio_seconds": audio_seconds, "threads": args.threads,
               "model_dir": args.model_dir, "results": results}
    ratio_names = {"beam10_lm_over_greedy": 0.0}
    if args.ctc_weight:
        ratio_names["beam10_lm_ctc_over_greedy"] = args.ctc_weight
    for name, ctc_weight in ratio_names.items():
        ratios = beam_lm_over_greedy(results, ctc_weight=ctc_weight)
        if ratios:
            figures[f"{name}_by_batch"] = ratios
            figures[name] = max(ratios.values())
            print(f"\n{name}: {figures[name]:.2f}× (by batch size: {', '.join(f'{b}: {r:.2f}×' for b, r in ratios.items())})")
    if args.json:
        write_json(args.json, figures, indent=2)


def beam_lm_over_greedy(results: List[Dict[str, object]], beam: int = 10, ctc_weight: float = 0.0) -> Dict[str, float]:
    """Per batch size, RTF of ``beam`` with LM (and the CTC weight
    ``ctc_weight``) over RTF of beam 1 without LM or CTC scores.

    Example
    -------
    >>> rows = [{"beam_size": 1, "batch_size": 1, "lm": False, "ctc_weight": 0.0, "rtf": 0.01},
    ...         {"beam_size": 10, "batch_size": 1, "lm": True, "ctc_weight": 0.0, "rtf": 0.015},
    ...         {"beam_size": 10, "batch_size": 1, "lm": True, "ctc_weight": 0.5, "rtf": 0.02}]
    >>> beam_lm_over_greedy(rows), beam_lm_over_greedy(rows, ctc_weight=0.5)
    ({'1': 1.5}, {'1': 2.0})
    """
    greedy = {r["batch_size"]: r["rtf"] for r in results
              if r["beam_size"] == 1 and not r["lm"] and not r.get("ctc_weight")}
    return {str(r["batch_size"]): round(r["rtf"] / greedy[r["batch_size"]], 2) for r in results
            if r["beam_size"] == beam and r["lm"] and r.get("ctc_weight", 0.0) == ctc_weight
            and greedy.get(r["batch_size"])}


if __name__ == "__main__":
    main()
