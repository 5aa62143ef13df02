#!/usr/bin/env python3
"""Streaming CIF recognition: token error rate offline against streaming, and each word's latency.

    python benchmarks/streaming_benchmark.py --model_dir results/streaming/cif_streaming/model \
        --data_folder data/synth_small --chunk_sizes 4 8 --json streaming.json

A model trained with dynamic chunks (``hparams/synth/cif_streaming.yaml``) decodes the ``small``
corpus's test utterances, greedily with its decoder alone (the streaming decoding), in three ways:

* ``offline``: each recording whole, full-context attention;
* ``chunked_offline`` (per chunk size): each recording whole, under the chunked attention a stream has;
* ``streaming`` (per chunk size): the recording fed as a stream in packets of ``--packet_ms``
  (:meth:`CIFASR.transcribe_chunk`), its tokens as they come out.

The stream's final transcript (its second pass at the end: the folder's beam search with CTC
prefix scores over the stream's fires) is scored too, against the same decoding of each whole
recording with full context (``offline_final_pass``) and under the same chunks. Token error rates
are over the model's units (the PLM's wordpieces of the transcripts, as in training). For
streaming, also: how many utterances streamed exactly the tokens of the chunked
offline decoding, how many lost their final token (their last token differs from it, or is
missing), and the latency of each correctly recognised word: the audio received when its last
piece came out, minus the true end of the word (``word_times.json``, from the synthesiser),
median and 90th percentile, in milliseconds and in chunks. The packets make the latency the
algorithm's (a chunk's tokens come out as soon as its audio and the 22.5 ms the features look
ahead have arrived); the computation's own time is given separately as the real-time factor (final
pass included) and as the time the end of a stream takes (the last chunk and the final pass).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from speechbrain.dataio.dataio import read_audio  # noqa: E402
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig  # noqa: E402
from speechbrain.utils.edit_distance import wer_details_for_batch  # noqa: E402

from benchmarks.timestamp_benchmark import matched_words  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.threads import machine_description  # noqa: E402


def token_error_rate(references: Sequence[List[str]], hypotheses: Sequence[List[str]]) -> float:
    """Corpus token error rate (%): all edits over all reference tokens."""
    details = wer_details_for_batch([str(i) for i in range(len(references))], list(references), list(hypotheses))
    edits = sum(d["insertions"] + d["deletions"] + d["substitutions"] for d in details)
    return round(100.0 * edits / max(1, sum(len(r) for r in references)), 2)


def percentile(values: Sequence[float], share: float) -> Optional[float]:
    """The ``share`` quantile (nearest rank), None for no values.

    Example
    -------
    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9)
    9
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(share * len(ordered))) - 1))]


def word_emissions(labels: Sequence[str], emitted_at: Sequence[float]) -> List[tuple]:
    """``(word, time its last piece came out)`` from the streamed wordpieces and their emission times.

    Example
    -------
    >>> word_emissions(["play", "##ing", "now"], [0.5, 0.9, 1.2])
    [('playing', 0.9), ('now', 1.2)]
    """
    words: List[list] = []
    for label, at in zip(labels, emitted_at):
        if label.startswith("##") and words:
            words[-1] = [words[-1][0] + label[2:], at]
        else:
            words.append([label, at])
    return [tuple(word) for word in words]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default="results/streaming/cif_streaming/model")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--chunk_sizes", type=int, nargs="+", default=[4, 8], help="encoder frames per chunk")
    parser.add_argument("--left_chunks", type=int, default=None, help="default: the model's")
    parser.add_argument("--packet_ms", type=float, default=10.0, help="audio per call of transcribe_chunk")
    parser.add_argument("--utterances", type=int, default=None, help="the first N test utterances (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hieradist_lobes.data.manifest import read_manifest
    from hieradist_lobes.data.synth import read_word_times
    from hieradist_lobes.inference import CIFASR
    from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, minilm_path

    asr = CIFASR.from_hparams(source=args.model_dir, savedir=args.model_dir,
                              overrides={"beam_size": 1, "ctc_weight_decode": 0.0})
    # The folder's own decoding (beam, CTC weight): the streams' final pass and its offline counterpart.
    joint = CIFASR.from_hparams(source=args.model_dir, savedir=args.model_dir)
    rows = read_manifest(os.path.join(args.data_folder, "test.csv"))[: args.utterances]
    truth = read_word_times(args.data_folder)
    splitter = PLMSplitter(PLMTokenizer(minilm_path()), "wrd")
    known = set(asr.tokenizer.labels())
    references = [[piece if piece in known else "<unk>" for piece in splitter(row["wrd"])] for row in rows]
    signals = [read_audio(row["wav"]) for row in rows]
    audio_seconds = sum(s.shape[0] for s in signals) / float(asr.hparams.sample_rate)
    label = asr.tokenizer.ind2lab
    shift = asr.frame_shift_seconds()
    left = asr.streaming_config().left_context_size if args.left_chunks is None else args.left_chunks

    def decode_whole(config, model=asr):
        started = time.perf_counter()
        hyps = [model.decode_batch(signal[None], torch.ones(1), dynchunktrain_config=config)[0][0]
                for signal in signals]
        return hyps, time.perf_counter() - started

    def rate(hyps):
        return token_error_rate(references, [[label[t] for t in h] for h in hyps])

    offline, offline_seconds = decode_whole(None)
    offline_joint, _ = decode_whole(None, joint)
    results: Dict[str, object] = {
        "model_dir": args.model_dir, "machine": machine_description(), "threads": args.threads,
        "utterances": len(rows), "audio_seconds": round(audio_seconds, 2), "frame_shift_ms": round(1000 * shift, 1),
        "packet_ms": args.packet_ms, "left_chunks": left, "decoding": "greedy, decoder alone",
        "offline": {"token_error_rate": rate(offline), "rtf": round(offline_seconds / audio_seconds, 4)},
        "final_pass": {"beam_size": int(joint.hparams.beam_size),
                       "ctc_weight_decode": float(joint.hparams.ctc_weight_decode or 0.0)},
        "offline_final_pass": {"token_error_rate": rate(offline_joint)},
        "chunks": {},
    }
    packet = max(1, int(round(args.packet_ms / 1000.0 * float(asr.hparams.sample_rate))))
    for chunk_size in args.chunk_sizes:
        config = DynChunkTrainConfig(chunk_size, left)
        chunked, _ = decode_whole(config)
        chunked_joint, _ = decode_whole(config, joint)
        streamed, finals, latencies_ms, end_ms, same, same_final, lost = [], [], [], [], 0, 0, 0
        started = time.perf_counter()
        for row, signal, expected, expected_final in zip(rows, signals, chunked, chunked_joint):
            context = joint.make_streaming_context(config)  # greedy as it streams, the folder's decoding at the end
            returned = time.perf_counter()
            for _ in joint.transcribe_signal_streaming(signal, context, packet):
                called, returned = returned, time.perf_counter()
            end_ms.append(1000.0 * (returned - called))  # the last call: the end of the stream
            streamed.append(context.tokens)
            finals.append(context.final_tokens)
            same += context.tokens == expected
            same_final += context.final_tokens == expected_final
            lost += bool(expected) and context.tokens[-1:] != expected[-1:]
            words = [(word, at, at) for word, at in word_emissions([label[t] for t in context.tokens],
                                                                  context.emitted_at)]
            reference = [(word, start, end) for word, start, end in truth[row["ID"]] if end is not None]
            latencies_ms.extend(1000.0 * (hyp[1] - ref[2]) for hyp, ref in matched_words(words, reference))
        streaming_seconds = time.perf_counter() - started
        chunk_ms = 1000.0 * chunk_size * shift
        median, p90 = (statistics.median(latencies_ms) if latencies_ms else None), percentile(latencies_ms, 0.9)
        results["chunks"][str(chunk_size)] = {
            "chunk_ms": round(chunk_ms, 1),
            "chunked_offline_token_error_rate": rate(chunked),
            "streaming_token_error_rate": rate(streamed),
            "streaming_equals_chunked_offline": f"{same}/{len(rows)}",
            "final_pass_token_error_rate": rate(finals),
            "chunked_offline_final_pass_token_error_rate": rate(chunked_joint),
            "final_pass_equals_chunked_offline": f"{same_final}/{len(rows)}",
            "final_token_lost": lost,
            "words_timed": len(latencies_ms),
            "latency_median_ms": None if median is None else round(median, 1),
            "latency_p90_ms": None if p90 is None else round(p90, 1),
            "latency_median_chunks": None if median is None else round(median / chunk_ms, 2),
            "latency_p90_chunks": None if p90 is None else round(p90 / chunk_ms, 2),
            "streaming_rtf": round(streaming_seconds / audio_seconds, 4),
            # The end of the stream: the last chunk, the tail fire and the final pass, computed.
            "end_of_stream_ms_median": round(statistics.median(end_ms), 1),
        }
    largest = results["chunks"][str(max(args.chunk_sizes))]
    offline_rate = results["offline"]["token_error_rate"]
    results["largest_chunk_vs_offline"] = round(largest["streaming_token_error_rate"] / max(offline_rate, 1e-9), 3)
    results["largest_chunk_final_pass_vs_offline"] = round(
        largest["final_pass_token_error_rate"] / max(results["offline_final_pass"]["token_error_rate"], 1e-9), 3)
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)
    return results


if __name__ == "__main__":
    main()
