#!/usr/bin/env python3
"""onnxruntime against PyTorch on CPU: real-time factor of greedy decoding, batch 1, same utterances.

    python benchmarks/onnx_benchmark.py --cif_model results/demo/cif/model \
        --student_model results/demo/student_average/model --data_folder data/synth_small --json onnx.json

Each model folder is exported (:mod:`hieradist_lobes.onnx_export`, into ``--onnx_root``) and the test
utterances are decoded one at a time, audio already in memory, with the same number of threads:

* CIF: PyTorch is ``CIFASR.decode_batch`` with ``beam_size=1`` and the decoder alone; onnxruntime is
  :class:`hieradist_lobes.onnx_runtime.ONNXCIFASR` (encoder graph, NumPy integrate-and-fire, one
  decoder-step graph per fire);
* CTC/attention: PyTorch is the model's ``encode``, CTC head and greedy CTC decoding
  (``ctc_greedy_decode``); onnxruntime is :class:`~hieradist_lobes.onnx_runtime.ONNXCTCASR`.

Each way is timed ``--repeats`` times after one warm-up pass, the two ways' passes alternating (the
median pass counts);
``identical`` counts the utterances whose tokens are the same both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hieradist_lobes.files import write_json  # noqa: E402
from hieradist_lobes.threads import machine_description  # noqa: E402


def one_pass(decode: Callable[[torch.Tensor], List[int]], signals: Sequence[torch.Tensor]) -> float:
    started = time.perf_counter()
    for signal in signals:
        decode(signal)
    return time.perf_counter() - started


def compare(pytorch: Callable, onnx: Callable, signals, audio_seconds: float, repeats: int) -> Dict:
    """Both ways' tokens (a warm-up pass each), then ``repeats`` timed passes of each, alternating, so
    that a machine's drift weighs on both alike; the median pass of each counts."""
    torch_tokens = [pytorch(signal) for signal in signals]
    onnx_tokens = [onnx(signal) for signal in signals]
    torch_passes, onnx_passes = [], []
    for _ in range(repeats):
        torch_passes.append(one_pass(pytorch, signals))
        onnx_passes.append(one_pass(onnx, signals))
    torch_seconds, onnx_seconds = statistics.median(torch_passes), statistics.median(onnx_passes)
    return {"pytorch_rtf": round(torch_seconds / audio_seconds, 4),
            "onnxruntime_rtf": round(onnx_seconds / audio_seconds, 4),
            "speedup": round(torch_seconds / onnx_seconds, 2),
            "identical": f"{sum(a == b for a, b in zip(torch_tokens, onnx_tokens))}/{len(signals)}"}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cif_model", default="results/demo/cif/model")
    parser.add_argument("--student_model", default="results/demo/student_average/model")
    parser.add_argument("--data_folder", default="data/synth_small")
    parser.add_argument("--onnx_root", default="results/benchmarks/onnx")
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from speechbrain.dataio.dataio import read_audio
    from speechbrain.inference.ASR import EncoderDecoderASR

    from hieradist_lobes.ctc_scoring import ctc_greedy_decode
    from hieradist_lobes.data.manifest import read_manifest
    from hieradist_lobes.inference import CIFASR
    from hieradist_lobes.onnx_export import export_onnx_folder
    from hieradist_lobes.onnx_runtime import load_onnx_folder

    rows = read_manifest(os.path.join(args.data_folder, "test.csv"))[: args.utterances]
    signals = [read_audio(row["wav"]) for row in rows]
    results: Dict[str, object] = {"machine": machine_description(), "threads": args.threads, "utterances": len(rows),
                                  "repeats": args.repeats, "onnxruntime": __import__("onnxruntime").__version__,
                                  "torch": torch.__version__}
    one = torch.ones(1)
    if args.cif_model:
        asr = CIFASR.from_hparams(source=args.cif_model, savedir=args.cif_model,
                                  overrides={"beam_size": 1, "ctc_weight_decode": 0.0})
        onnx = load_onnx_folder(export_onnx_folder(args.cif_model, os.path.join(args.onnx_root, "cif")), args.threads)
        rate = float(asr.hparams.sample_rate)
        results["cif"] = {"model_dir": args.cif_model, **compare(
            lambda s: asr.decode_batch(s[None], one)[0][0], lambda s: onnx.decode_signal(s.numpy()),
            signals, sum(s.shape[0] for s in signals) / rate, args.repeats)}
    if args.student_model:
        student = EncoderDecoderASR.from_hparams(source=args.student_model, savedir=args.student_model)
        onnx = load_onnx_folder(export_onnx_folder(args.student_model, os.path.join(args.onnx_root, "student")),
                                args.threads)
        tokenizer = student.tokenizer
        drop = [tokenizer.get_bos_index(), tokenizer.get_eos_index()]

        def torch_ctc(signal: torch.Tensor) -> List[int]:
            with torch.no_grad():
                logprobs = torch.log_softmax(student.mods.model.ctc_lin(student.encode_batch(signal[None], one)), -1)
            return ctc_greedy_decode(logprobs, torch.tensor([logprobs.shape[1]]), tokenizer.get_blank_index(), drop)[0]

        rate = float(student.hparams.sample_rate)
        results["student"] = {"model_dir": args.student_model, **compare(
            torch_ctc, lambda s: onnx.decode_signal(s.numpy()), signals,
            sum(s.shape[0] for s in signals) / rate, args.repeats)}
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results, indent=2)
    return results


if __name__ == "__main__":
    main()
