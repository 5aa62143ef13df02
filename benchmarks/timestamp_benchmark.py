#!/usr/bin/env python3
"""How far a CIF model's word times are from the words' true times (results go to docs/benchmarks.md).

    python benchmarks/timestamp_benchmark.py --model_dir results/demo/cif/model --json timestamps.json

The built-in corpus records when the synthesiser spoke each word (``word_times.json``, from eSpeak NG's
events; made at the corpus's preparation). On the ``small`` corpus's test speakers, every test utterance
is decoded with the model's beam search; the correctly recognised words (the hypothesis aligned with the
reference, equal words) are compared with their true start and end:
``word_start_mae_ms`` and ``word_end_mae_ms``, their medians, and the share within 80 ms.

A token's span comes from the CIF weights (:func:`hieradist_lobes.cif.token_spans`): it ends where it fires
and starts where the accumulated weight passes ``k + onset`` (the first token ``first_onset``: the silence
before the speech gives it weight from the first frame). The onset, then the first token's, are chosen on
the validation speakers (the lowest start + end MAE); the test figures are given for every value; also the
old convention (each token at the start of the frame where it fired).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hieradist_lobes.cif import fire_times, token_spans  # noqa: E402
from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.threads import machine_description  # noqa: E402

ONSETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
FIRST_ONSETS = (0.0, 0.2, 0.4, 0.6, 0.8)
WITHIN_MS = 80.0

Span = Tuple[str, float, float]


def matched_words(hypothesis: Sequence[Span], reference: Sequence[Span]) -> List[Tuple[Span, Span]]:
    """Pairs (hypothesis word, reference word) of the words recognised correctly, by alignment.

    Example
    -------
    >>> matched_words([("the", 0.1, 0.2), ("cat", 0.2, 0.5)], [("THE", 0.1, 0.2), ("DOG", 0.2, 0.5)])
    [(('the', 0.1, 0.2), ('THE', 0.1, 0.2))]
    """
    hyp_words = [word.lower() for word, _, _ in hypothesis]
    ref_words = [word.lower() for word, _, _ in reference]
    pairs = []
    for block in difflib.SequenceMatcher(a=hyp_words, b=ref_words, autojunk=False).get_matching_blocks():
        pairs.extend((hypothesis[block.a + i], reference[block.b + i]) for i in range(block.size))
    return pairs


def error_summary(errors_ms: Sequence[float]) -> Dict[str, float]:
    """Mean and median absolute error (ms) and the share within :data:`WITHIN_MS`.

    Example
    -------
    >>> error_summary([-40.0, 100.0, 10.0])
    {'mae_ms': 50.0, 'median_ms': 40.0, 'within_80ms_pct': 66.7}
    """
    absolute = [abs(error) for error in errors_ms]
    if not absolute:
        return {"mae_ms": float("nan"), "median_ms": float("nan"), "within_80ms_pct": float("nan")}
    return {"mae_ms": round(statistics.fmean(absolute), 1), "median_ms": round(statistics.median(absolute), 1),
            "within_80ms_pct": round(100.0 * sum(error <= WITHIN_MS for error in absolute) / len(absolute), 1)}


def words_of(pieces: Sequence[str], spans: Sequence[Tuple[float, float]]) -> List[Span]:
    """Wordpieces with spans merged into words (:func:`hieradist_lobes.inference.merge_pieces`)."""
    from hieradist_lobes.inference import merge_pieces

    return merge_pieces([(piece, start, end) for piece, (start, end) in zip(pieces, spans)])


def decode_split(asr, rows: Sequence[Dict[str, str]], batch_size: int = 8):
    """Per utterance: its token labels, its CIF weights (trimmed to its frames), its fire frames."""
    from speechbrain.dataio.dataio import read_audio
    from speechbrain.utils.data_utils import batch_pad_right

    decoded = []
    for first in range(0, len(rows), batch_size):
        group = rows[first:first + batch_size]
        wavs, wav_lens = batch_pad_right([read_audio(row["wav"]) for row in group])
        hyps, fires = asr.decode_fires(wavs, wav_lens)
        frames = torch.round(wav_lens * fires.alphas.shape[1]).long()
        for index, (row, hyp) in enumerate(zip(group, hyps)):
            decoded.append({"id": row["ID"], "pieces": [asr.tokenizer.ind2lab[int(i)] for i in hyp],
                            "alphas": fires.alphas[index, : int(frames[index])].cpu(),
                            "fire_frames": fires.fire_frames[index: index + 1].cpu(),
                            "fired": fires.fired_lengths[index: index + 1].cpu()})
    return decoded


def measure(decoded, truth, shift: float, threshold: float, onset: Optional[float],
            first_onset: Optional[float] = None) -> Dict[str, object]:
    """Start and end errors of the correctly recognised words; ``onset`` None: the old fire-frame times
    (a token at the start of the frame where it fired, as its start and its end)."""
    starts, ends, words, hypothesis_words = [], [], 0, 0
    for utterance in decoded:
        count = len(utterance["pieces"])
        if onset is None:
            times = fire_times(utterance["fire_frames"], utterance["fired"], shift)[0][:count]
            spans = [(time, time) for time in times]
        else:
            spans = token_spans(utterance["alphas"], count, shift, threshold=threshold, onset=onset,
                                first_onset=first_onset)
        hypothesis = words_of(utterance["pieces"], spans)
        hypothesis_words += len(hypothesis)
        for (_, start, end), (_, true_start, true_end) in matched_words(hypothesis, truth[utterance["id"]]):
            if true_start is None or true_end is None:
                continue
            words += 1
            starts.append(1000.0 * (start - true_start))
            ends.append(1000.0 * (end - true_end))
    bias = {"start_bias_ms": round(statistics.fmean(starts), 1) if starts else float("nan"),
            "end_bias_ms": round(statistics.fmean(ends), 1) if ends else float("nan")}
    start, end = error_summary(starts), error_summary(ends)
    return {"correct_words": words, "hypothesis_words": hypothesis_words,
            **{f"word_start_{key}": value for key, value in start.items()},
            **{f"word_end_{key}": value for key, value in end.items()}, **bias}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default="results/demo/cif/model")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--corpus_size", default="small")
    parser.add_argument("--onsets", default=",".join(f"{o:g}" for o in ONSETS))
    parser.add_argument("--max_utterances", type=int, default=0, help="per split (0: all)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from hieradist_lobes.data.manifest import read_manifest
    from hieradist_lobes.data.synth import prepare_synth, read_word_times
    from hieradist_lobes.inference import CIFASR, FIRST_TOKEN_ONSET, TOKEN_ONSET

    if not os.path.isfile(os.path.join(args.model_dir, "hyperparams.yaml")):
        parser.error(f"no CIF model folder {args.model_dir} (make demo-full trains results/demo/cif/model)")
    prepare_synth(args.data_folder, size=args.corpus_size)  # adds word_times.json to an older corpus
    truth = read_word_times(args.data_folder)
    asr = CIFASR.from_hparams(source=args.model_dir, savedir=args.model_dir)
    shift, threshold = asr.frame_shift_seconds(), float(asr.mods.model.cif.threshold)
    onsets = [float(value) for value in args.onsets.split(",") if value]
    results: Dict[str, object] = {"machine": machine_description(), "model_dir": os.path.abspath(args.model_dir),
                                  "frame_shift_ms": round(1000 * shift, 1), "splits": {}}
    decoded_splits = {}
    for split in ("valid", "test"):
        rows = read_manifest(os.path.join(args.data_folder, f"{split}.csv"))
        rows = rows[: args.max_utterances] if args.max_utterances else rows
        decoded = decoded_splits[split] = decode_split(asr, rows)
        results["splits"][split] = {"utterances": len(rows),
                                    "by_onset": {f"{onset:g}": measure(decoded, truth, shift, threshold, onset)
                                                 for onset in onsets},
                                    "fire_frame": measure(decoded, truth, shift, threshold, None)}
    on_valid = results["splits"]["valid"]["by_onset"]
    chosen = min(on_valid, key=lambda key: on_valid[key]["word_start_mae_ms"] + on_valid[key]["word_end_mae_ms"])
    # Then the first token's onset, the chosen onset kept for the others.
    for split, decoded in decoded_splits.items():
        results["splits"][split]["by_first_onset"] = {
            f"{first:g}": measure(decoded, truth, shift, threshold, float(chosen), first) for first in FIRST_ONSETS}
    on_valid = results["splits"]["valid"]["by_first_onset"]
    first = min(on_valid, key=lambda key: on_valid[key]["word_start_mae_ms"] + on_valid[key]["word_end_mae_ms"])
    results["chosen_on_valid"] = {"onset": float(chosen), "first_onset": float(first)}
    results["library"] = {"onset": TOKEN_ONSET, "first_onset": FIRST_TOKEN_ONSET}
    results["test"] = results["splits"]["test"]["by_first_onset"][first]
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)
    return results


if __name__ == "__main__":
    main()
