#!/usr/bin/env python3
"""Decoding speed of a trained CIF model on CPU: real-time factor (RTF).

    python benchmarks/cif_decoding_benchmark.py --model_dir results/demo/cif/model \\
        --manifest data/synth_small/test.csv --lm_dir results/demo/lm/model

RTF = processing seconds / audio seconds (lower is faster; 0.1 = ten times
faster than real time), for each beam size, one utterance at a time
(``transcribe_file``, what a user calls) and in padded batches
(``transcribe_batch``), with and without LM shallow fusion.  Also reports
the share of the time spent in the encoder + CIF versus the beam search.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import torch
from speechbrain.utils.data_utils import batch_pad_right

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hieradist_lobes.data.manifest import read_manifest  # noqa: E402
from hieradist_lobes.inference import CIFASR  # noqa: E402


def load(model_dir: str, beam_size: int, lm_dir: Optional[str], lm_weight: float) -> CIFASR:
    overrides: Dict[str, object] = {"beam_size": beam_size}
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
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--manifest", required=True, help="utterances to decode (a test manifest)")
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--beam_sizes", default="1,5,10")
    parser.add_argument("--batch_sizes", default="1,16")
    parser.add_argument("--lm_dir", default=None)
    parser.add_argument("--lm_weight", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from speechbrain.dataio.dataio import read_audio

    rows = read_manifest(args.manifest)[: args.utterances]
    signals = [read_audio(row["wav"]) for row in rows]
    audio_seconds = sum(len(s) for s in signals) / 16000.0
    results = []
    for lm_dir in [None, args.lm_dir] if args.lm_dir else [None]:
        for beam in [int(b) for b in args.beam_sizes.split(",")]:
            asr = load(args.model_dir, beam, lm_dir, args.lm_weight)
            measure(asr, signals[:2], 1)  # warm-up
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                timing = measure(asr, signals, batch)
                results.append({"beam_size": beam, "batch_size": batch, "lm": bool(lm_dir),
                                "rtf": round(timing["seconds"] / audio_seconds, 4),
                                "encoder_cif_share": round(timing["encode_seconds"] / timing["seconds"], 3)})
    print(f"{len(rows)} utterances, {audio_seconds:.1f} s of audio, {args.threads} threads, model {args.model_dir}\n")
    print("| beam | batch | LM | RTF | encoder+CIF share |")
    print("|---:|---:|:---:|---:|---:|")
    for r in results:
        print(f"| {r['beam_size']} | {r['batch_size']} | {'yes' if r['lm'] else 'no'} | {r['rtf']:.4f} | "
              f"{100 * r['encoder_cif_share']:.0f} % |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"utterances": len(rows), "audio_seconds": audio_seconds, "threads": args.threads,
                       "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
