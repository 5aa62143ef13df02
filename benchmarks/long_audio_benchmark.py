"""Long recordings with a CIF model: joined test utterances transcribed whole,
in segments cut at pauses, and one utterance at a time.

    python benchmarks/long_audio_benchmark.py --model_dir results/demo/cif/model \
        --manifest data/synth_small/test.csv --utterances 23 --json long_audio.json

The reference of the long recording is the utterances' transcripts joined;
each way of decoding is scored by token error rate against it (and the
separate decoding is the ceiling: no joins at all).  Also reports how many
reference tokens each way lost (deletions) and the real-time factor.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from speechbrain.dataio.dataio import read_audio
from speechbrain.utils.edit_distance import wer_details_for_batch

from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.files import write_json
from hieradist_lobes.plm import PLMSplitter
from hieradist_lobes.inference import CIFASR
from hieradist_lobes.plm import PLMTokenizer, minilm_path


def score(reference, hypothesis):
    details = wer_details_for_batch(["long"], [reference], [hypothesis])[0]
    return {"token_error_rate": round(float(details["WER"]), 2), "deletions": int(details["deletions"]),
            "insertions": int(details["insertions"]), "substitutions": int(details["substitutions"]),
            "hypothesis_tokens": len(hypothesis), "reference_tokens": len(reference)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default="results/demo/cif/model")
    parser.add_argument("--manifest", default="data/synth_small/test.csv")
    parser.add_argument("--utterances", type=int, default=23)
    parser.add_argument("--segment_seconds", type=float, default=None,
                        help="longest segment (default: the model's, from its training utterances)")
    parser.add_argument("--plm_path", default=None, help="the PLM whose tokenizer made the labels (default: MiniLM)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    asr = CIFASR.from_hparams(source=args.model_dir, savedir=args.model_dir)
    rows = read_manifest(args.manifest, ["ID", "duration", "wav", "wrd"])[: args.utterances]
    signals = [read_audio(row["wav"]) for row in rows]
    signal = torch.cat(signals)
    seconds = signal.shape[0] / float(asr.hparams.sample_rate)
    # The reference tokens: the PLM's pieces of each transcript, as in training.
    splitter = PLMSplitter(PLMTokenizer(args.plm_path or minilm_path()), "wrd")
    reference = [piece for row in rows for piece in splitter(row["wrd"])]
    known = set(asr.tokenizer.labels())
    reference = [piece if piece in known else "<unk>" for piece in reference]

    segment_seconds = args.segment_seconds or asr.max_segment_seconds
    results = {"model_dir": args.model_dir, "utterances": len(rows), "audio_seconds": round(seconds, 2),
               "segment_seconds": segment_seconds}
    label = asr.tokenizer.ind2lab
    ways = {
        "whole": lambda: asr.decode_signal(signal, max_segment_seconds=1e9)[0],
        "segments": lambda: asr.decode_signal(signal, max_segment_seconds=segment_seconds)[0],
        "separately": lambda: [t for s in signals for t in asr.decode_signal(s, max_segment_seconds=1e9)[0]],
    }
    for name, decode in ways.items():
        start = time.perf_counter()
        tokens = decode()
        elapsed = time.perf_counter() - start
        results[name] = {**score(reference, [label[int(t)] for t in tokens]), "rtf": round(elapsed / seconds, 4)}
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)


if __name__ == "__main__":
    main()
