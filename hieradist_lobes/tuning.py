"""Decoding weights chosen on the validation set, for a trained CIF model.

A CIF model decodes with a beam search over its fires that can add two
scores to the decoder's: its own CTC head's prefix scores
(``ctc_weight_decode``) and a token LM's (``lm_weight``, shallow fusion).
Which weights help depends on the model and the LM, so they are chosen on
the validation set and then used, unchanged, on the test set::

    python -m hieradist_lobes.tuning --model_dir results/synth/cif/model \\
        --valid_csv data/synth_small/valid.csv --test_csv data/synth_small/test.csv \\
        --lm_folder results/synth/lm/model --json results/synth/cif/decoding_weights.json

The CTC weight is chosen first (without the LM), then the LM weight with that
CTC weight; each grid includes 0, so the choice can never be worse on the
validation set than decoding without that score. ``--ctc_weights keep`` keeps
the CTC weight the model folder has (the one its recipe chose on valid) and
chooses only the LM weight.

Example
-------
>>> choose_on_grid({0.0: 40.0, 0.2: 35.5, 0.4: 35.5, 0.6: 37.0})
0.2
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from hieradist_lobes.cli import path_argument, run_command
from hieradist_lobes.files import write_json
from hieradist_lobes.threads import set_threads

logger = logging.getLogger(__name__)

CTC_WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.7)
LM_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)


def token_error_rate(asr, rows: Sequence[Mapping[str, str]], split_labels: Callable[[str], Sequence[str]],
                     batch_size: int = 16) -> float:
    """Token error rate (%) of a :class:`~hieradist_lobes.inference.CIFASR`
    on manifest rows, with the model's decoding settings as they are now;
    ``split_labels`` turns a row's ``wrd`` transcript into reference tokens
    (the PLM's tokenizer)."""
    from speechbrain.dataio.dataio import read_audio
    from speechbrain.utils.data_utils import batch_pad_right
    from speechbrain.utils.metric_stats import ErrorRateStats

    stats = ErrorRateStats()
    labels = asr.tokenizer.ind2lab
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        _, hyps = asr.transcribe_batch(*batch_pad_right([read_audio(row["wav"]) for row in chunk]))
        stats.append([row["ID"] for row in chunk], [[labels[int(i)] for i in hyp] for hyp in hyps],
                     [list(split_labels(row["wrd"])) for row in chunk])
    return round(float(stats.summarize("error_rate")), 2)


def choose_on_grid(scores: Mapping[float, float]) -> float:
    """The weight with the lowest error rate; on a tie the smallest weight."""
    return min(scores, key=lambda weight: (scores[weight], weight))


def sweep(asr, name: str, grid: Sequence[float], score: Callable[[object], float]) -> Dict[float, float]:
    """``score(asr)`` with the decoding setting ``name`` set to each value of ``grid`` (then left at the last)."""
    results = {}
    for weight in grid:
        setattr(asr.hparams, name, float(weight))
        results[float(weight)] = score(asr)
        logger.info("%s %.2f: %.2f", name, weight, results[float(weight)])
    return results


def choose_decoding_weights(asr, valid_rows: Sequence[Mapping[str, str]], split_labels: Callable[[str], Sequence[str]],
                            ctc_weights: Optional[Sequence[float]] = CTC_WEIGHTS,
                            lm_weights: Optional[Sequence[float]] = None,
                            test_rows: Optional[Sequence[Mapping[str, str]]] = None) -> Dict[str, object]:
    """Choose ``ctc_weight_decode`` on ``valid_rows`` (``ctc_weights`` None:
    keep the model's), then ``lm_weight`` (only when the model was loaded with
    an LM and ``lm_weights`` are given), and score ``test_rows`` with the choice.

    Returns a record: each grid's validation error rates, the chosen
    weights, the validation error rate with them and (with ``test_rows``)
    the test error rate, and the test error rate with no CTC or LM score
    for comparison. The model is left set to the chosen weights.
    """
    def valid_score(model) -> float:
        return token_error_rate(model, valid_rows, split_labels)

    asr.hparams.lm_weight = 0.0
    record: Dict[str, object] = {}
    if ctc_weights is not None:
        record["valid_by_ctc_weight"] = ctc_grid = sweep(asr, "ctc_weight_decode", ctc_weights, valid_score)
        asr.hparams.ctc_weight_decode = choose_on_grid(ctc_grid)
    record["ctc_weight_decode"] = float(asr.hparams.ctc_weight_decode)
    record["lm_weight"] = 0.0
    if asr.lm is not None and lm_weights:
        lm_grid = sweep(asr, "lm_weight", lm_weights, valid_score)
        record["valid_by_lm_weight"] = lm_grid
        record["lm_weight"] = choose_on_grid(lm_grid)
    asr.hparams.lm_weight = record["lm_weight"]
    if "valid_by_lm_weight" in record:
        record["valid_error_rate"] = record["valid_by_lm_weight"][record["lm_weight"]]
    elif ctc_weights is not None:
        record["valid_error_rate"] = record["valid_by_ctc_weight"][record["ctc_weight_decode"]]
    else:  # nothing was swept: score valid once with the model's weights
        record["valid_error_rate"] = valid_score(asr)
    if test_rows is not None:
        record["test_error_rate"] = token_error_rate(asr, test_rows, split_labels)
        chosen = (asr.hparams.ctc_weight_decode, asr.hparams.lm_weight)
        asr.hparams.ctc_weight_decode, asr.hparams.lm_weight = 0.0, 0.0
        record["test_error_rate_plain"] = token_error_rate(asr, test_rows, split_labels)
        asr.hparams.ctc_weight_decode, asr.hparams.lm_weight = chosen
    return record


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Command line: choose the weights of one CIF model folder (see the module docstring)."""
    from hieradist_lobes.data.manifest import read_manifest
    from hieradist_lobes.inference import CIFASR
    from hieradist_lobes.plm import PLMSplitter, PLMTokenizer

    parser = argparse.ArgumentParser(description="Choose a CIF model's CTC and LM decoding weights on valid.")
    parser.add_argument("--model_dir", required=True, type=path_argument,
                        help="a CIF model folder (CIFASR.from_hparams loads it)")
    parser.add_argument("--valid_csv", required=True, type=path_argument, help="manifest the weights are chosen on")
    parser.add_argument("--test_csv", default=None, type=path_argument, help="manifest scored with the chosen weights")
    parser.add_argument("--plm_path", required=True, type=path_argument,
                        help="the PLM folder whose tokenizer made the model's units")
    parser.add_argument("--lm_folder", default=None, type=path_argument,
                        help="a token LM folder (train_lm.py) for shallow fusion")
    parser.add_argument("--ctc_weights", default=",".join(map(str, CTC_WEIGHTS)),
                        help="CTC weights to choose from, comma-separated; 'keep': the model folder's")
    parser.add_argument("--lm_weights", default=",".join(map(str, LM_WEIGHTS)))
    parser.add_argument("--json", default=None, type=path_argument, help="write the record here")
    args = parser.parse_args(argv)

    def weights(text: str, option: str) -> List[float]:
        try:
            values = [float(value) for value in text.split(",") if value.strip()]
        except ValueError:
            values = []
        if not values or any(not 0.0 <= value for value in values):
            parser.error(f"{option} {text!r}: give non-negative numbers, comma-separated")
        return values

    keep = args.ctc_weights.strip() == "keep"
    ctc_weights = None if keep else weights(args.ctc_weights, "--ctc_weights")
    lm_weights = weights(args.lm_weights, "--lm_weights")
    if ctc_weights is not None and any(value > 1.0 for value in ctc_weights):
        parser.error(f"--ctc_weights {args.ctc_weights!r}: CTC weights lie in [0, 1]")
    set_threads()  # this process's share of the cores (the demo runs several side by side)
    overrides = {"lm_folder": args.lm_folder} if args.lm_folder else {}
    asr = CIFASR.from_hparams(source=args.model_dir, savedir=args.model_dir, overrides=overrides)
    split_labels = PLMSplitter(PLMTokenizer(args.plm_path), "wrd")
    record = choose_decoding_weights(asr, read_manifest(args.valid_csv), split_labels, ctc_weights, lm_weights,
                                     read_manifest(args.test_csv) if args.test_csv else None)
    print(json.dumps(record, indent=2))
    if args.json:
        write_json(args.json, record, indent=2)
    return record


if __name__ == "__main__":
    run_command(main)  # a user's mistake ends with its message, not a traceback
