#!/usr/bin/env python3
"""GPU check: everything that runs differently on a GPU, in one short run.

    bash benchmarks/gpu_check.sh                        # after `make install`, on a machine with a GPU
    bash benchmarks/gpu_check.sh --output gpu_check.json

Checks, in order (one line each: PASS, FAIL or SKIP, with seconds and details):

1. ``device_tests``: the test suite's tests marked ``device`` with ``--device=cuda``
   (CIF against its definition, ACD, pseudo-label CTC, the cached beam search).
2. ``corpus``: the tiny synthetic corpus (CPU, eSpeak NG).
3. For each precision (fp32, bf16, fp16): a teacher, a multi-teacher student,
   a CIF baseline and a CIF+HieraDist model, each trained for a few updates
   on the GPU (SpeechBrain's ``--device`` and ``--precision``).
4. ``teacher_store``: the fp32 teacher's outputs written to an HDF5 store on the GPU;
   ``plm_store``: the PLM features (all-MiniLM-L6-v2 from its wheel) on the GPU.
5. ``cifasr_decode``: ``CIFASR`` loaded on the GPU transcribes a test file.
6. ``cif_streaming``: a streaming CIF model trained on the GPU for a few updates streams three test
   files on the GPU, in pieces of 1 000 samples; its tokens (and its final pass's) must be those of
   the whole-file decoding under the same chunks.
7. ``cif_fwd_bwd``: CIF forward + backward at B32/T600/D512 on the GPU, in ms.

Writes ``gpu_check.json`` (``--output``). On a machine without CUDA every
check is reported SKIP with the reason and the script exits 0, so that it can
be run (and tested) anywhere; ``--device=cpu`` runs the whole check on the
CPU instead, to try the script itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = ("fp32", "bf16", "fp16")
SYSTEMS = ("teacher", "student", "cif", "cif_hieradist")
CHECKS = ["device_tests", "corpus", "teacher_store", "plm_store",
          *[f"{system}_{precision}" for precision in PRECISIONS for system in SYSTEMS],
          "cifasr_decode", "cif_streaming", "cif_fwd_bwd"]
# A few updates per system: enough to run every loss, the optimiser step and a checkpoint.
FAST = ["--debug", "--debug_batches=3", "--debug_epochs=1", "--number_of_epochs=1", "--num_workers=0"]


def recipe(path: str) -> Callable:
    """The ``main(argv)`` of ``recipes/<path>``."""
    from hieradist_lobes.jobs import load_main

    return load_main(str(ROOT / "recipes" / path))


class Checks:
    """Runs named checks, prints one line each and keeps their results."""

    def __init__(self) -> None:
        self.results: List[Dict[str, object]] = []

    def run(self, name: str, function: Callable[[], Dict[str, object]]) -> Dict[str, object]:
        start = time.time()
        try:
            details = function() or {}
            status = "PASS"
        except Exception as error:  # one failing check must not hide the others
            details = {"error": f"{type(error).__name__}: {error}",
                       "traceback": traceback.format_exc(limit=6)}
            status = "FAIL"
        entry = {"name": name, "status": status, "seconds": round(time.time() - start, 1), **details}
        self.results.append(entry)
        shown = {k: v for k, v in details.items() if k != "traceback"}
        print(f"{status}  {name:<24} {entry['seconds']:7.1f} s  {json.dumps(shown)[:200]}", flush=True)
        return entry

    def skip(self, name: str, reason: str) -> None:
        self.results.append({"name": name, "status": "SKIP", "reason": reason})
        print(f"SKIP  {name:<24} {reason}", flush=True)

    def passed(self, name: str) -> bool:
        return any(r["name"] == name and r["status"] == "PASS" for r in self.results)


def device_tests(device: str) -> Dict[str, object]:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "device", f"--device={device}", "-p", "no:cacheprovider",
               "tests"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = (completed.stdout.strip().splitlines() or [""])[-1]
    if completed.returncode != 0:
        raise RuntimeError(f"pytest exit {completed.returncode}: {last}\n{completed.stdout[-2000:]}")
    return {"pytest": last}


def wordpiece_count(cif_yaml: str, data: List[str]) -> int:
    """The CIF models' ``output_neurons`` for this corpus (its training wordpieces + 4)."""
    from hieradist_lobes.data import prepare_manifests
    from hieradist_lobes.hparams import load_hparams
    from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, plm_tokenizer

    overrides = dict(argument[2:].split("=", 1) for argument in data)
    hparams = load_hparams(cif_yaml, overrides).hparams
    manifests = prepare_manifests(hparams)
    return len(plm_tokenizer(manifests["train"], PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])))


def cif_fwd_bwd_ms(device: str, repeats: int = 20) -> Dict[str, object]:
    import torch

    from benchmarks.cif_benchmark import make_alphas
    from hieradist_lobes.cif import integrate_and_fire

    generator = torch.Generator().manual_seed(0)
    alphas = make_alphas(32, 600, "small", generator).to(device)
    hidden = torch.randn(32, 600, 512, generator=generator).to(device)
    times = []
    for index in range(repeats + 3):
        a, h = alphas.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fired, _ = integrate_and_fire(a, h, 1.0, 0.5)
        fired.sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if index >= 3:  # warm-up
            times.append(time.perf_counter() - start)
    times.sort()
    return {"median_ms": round(1000 * times[len(times) // 2], 2), "batch": 32, "frames": 600, "dim": 512}


def streaming_matches_whole_files(folder: str, wavs: List[str], device: str) -> Dict[str, object]:
    """Stream each file on ``device`` in pieces of 1 000 samples; the streamed tokens and the final pass's
    must equal the whole-file decoding (greedy, and the folder's beam with CTC) under the same chunks."""
    import torch
    from speechbrain.dataio.dataio import read_audio

    from hieradist_lobes.inference import CIFASR

    greedy = CIFASR.from_hparams(source=folder, savedir=folder, run_opts={"device": device},
                                 overrides={"beam_size": 1, "ctc_weight_decode": 0.0})
    joint = CIFASR.from_hparams(source=folder, savedir=folder, run_opts={"device": device},
                                overrides={"beam_size": 3, "ctc_weight_decode": 0.5})
    config = joint.streaming_config()
    tokens = 0
    for path in wavs:
        signal = read_audio(path)
        context = joint.make_streaming_context()
        for _ in joint.transcribe_signal_streaming(signal, context, piece_samples=1000):
            pass
        whole = greedy.decode_batch(signal[None], torch.ones(1), dynchunktrain_config=config)[0][0]
        whole_joint = joint.decode_batch(signal[None], torch.ones(1), dynchunktrain_config=config)[0][0]
        if context.tokens != whole or context.final_tokens != whole_joint:
            raise RuntimeError(f"{path}: streamed {context.tokens} / final {context.final_tokens}, whole file "
                               f"{whole} / {whole_joint}")
        tokens += len(context.tokens)
    return {"files": len(wavs), "streamed_tokens": tokens,
            "weights_on": str(next(joint.mods.parameters()).device)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="gpu_check.json", help="where the results go (JSON)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu to try the script")
    parser.add_argument("--work_folder", default=None, help="corpus and models (default: a temporary folder)")
    args = parser.parse_args(argv)

    import torch

    checks = Checks()
    cuda = torch.cuda.is_available()
    summary: Dict[str, object] = {"device": args.device, "cuda_available": cuda, "torch": torch.__version__,
                                  "checks": checks.results}
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not cuda:
        reason = "torch sees no CUDA device on this machine: GPU checks not run"
        print(f"gpu_check: {reason} (torch {torch.__version__}, CUDA build {torch.version.cuda})")
        for name in CHECKS:
            checks.skip(name, reason)
        summary["passed"] = None
        write(summary, args.output)
        return 0
    if on_gpu:
        summary["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        print(f"gpu_check on {summary['gpu']}, torch {torch.__version__}", flush=True)

    work = Path(args.work_folder or tempfile.mkdtemp(prefix="gpu-check-"))
    corpus, results = work / "synth_tiny", work / "results"
    data = [f"--data_folder={corpus}", "--corpus_size=tiny", f"--output_root={results}"]
    on_device = [f"--device={args.device}"]
    models: Dict[str, str] = {}

    checks.run("device_tests", lambda: device_tests(args.device))

    def make_corpus():
        from hieradist_lobes.data.synth import prepare_synth

        prepare_synth(str(corpus), size="tiny", seed=1234, num_workers=2, progress=False)
        return {"folder": str(corpus)}

    checks.run("corpus", make_corpus)
    if not checks.passed("corpus"):
        for name in CHECKS[2:]:
            checks.skip(name, "no corpus")
        return finish(checks, summary, args.output)

    train_teacher, train_kd = recipe("multi_teacher_kd/train_teacher.py"), recipe("multi_teacher_kd/train_kd.py")
    save_teachers = recipe("multi_teacher_kd/save_teachers.py")
    train_cif, train_cif_kd = recipe("cif_hieradist/train.py"), recipe("cif_hieradist/train_kd.py")
    save_plm_features = recipe("cif_hieradist/save_plm_features.py")
    hparams = ROOT / "hparams" / "synth"
    cif_vocabulary = [f"--output_neurons={wordpiece_count(str(hparams / 'cif.yaml'), data)}"]

    def train(name: str, main: Callable, arguments: List[str]) -> Callable[[], Dict[str, object]]:
        def run():
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            result = main([*arguments, *data, *on_device, *FAST, f"--experiment_name={name}"])
            models[name] = result["model_dir"]
            details = {key: round(value, 2) for key, value in result.items()
                       if key in ("valid_error_rate", "test_error_rate")}
            if on_gpu:
                # Evidence that the work ran on the GPU, not silently on the CPU.
                details["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                if not details["gpu_peak_mib"] > 0:
                    raise RuntimeError("nothing was allocated on the GPU")
            return details
        return run

    checks.run("teacher_fp32", train("teacher_fp32", train_teacher, [str(hparams / "asr.yaml"), "--precision=fp32"]))

    def teacher_store():
        if "teacher_fp32" not in models:
            raise RuntimeError("no fp32 teacher to store")
        store = save_teachers([str(hparams / "save_teachers.yaml"), *data, *on_device,
                               f"--teacher_dirs=[{models['teacher_fp32']}]",
                               f"--store_path={results / 'teacher_store'}"])
        return {"store": str(store)}

    def plm_store():
        store = save_plm_features([str(hparams / "cif_plm_features.yaml"), *data, *on_device, *cif_vocabulary,
                                   f"--store_path={results / 'plm_store'}"])
        return {"store": str(store)}

    checks.run("teacher_store", teacher_store)
    checks.run("plm_store", plm_store)
    for precision in PRECISIONS:
        mode = f"--precision={precision}"
        if precision == "fp16" and not on_gpu:
            for system in SYSTEMS:
                checks.skip(f"{system}_{precision}", "SpeechBrain runs fp16 on CUDA only")
            continue
        if precision != "fp32":
            checks.run(f"teacher_{precision}", train(f"teacher_{precision}", train_teacher,
                                                     [str(hparams / "asr.yaml"), mode]))
        if checks.passed("teacher_store"):
            checks.run(f"student_{precision}", train(f"student_{precision}", train_kd, [
                str(hparams / "train_kd.yaml"), mode, "--strategy=weighted",
                f"--teacher_store={results / 'teacher_store'}"]))
        else:
            checks.skip(f"student_{precision}", "no teacher store")
        checks.run(f"cif_{precision}", train(f"cif_{precision}", train_cif,
                                             [str(hparams / "cif.yaml"), mode, *cif_vocabulary]))
        if checks.passed("plm_store"):
            checks.run(f"cif_hieradist_{precision}", train(f"cif_hieradist_{precision}", train_cif_kd, [
                str(hparams / "cif_kd.yaml"), mode, "--distillation=hieradist", *cif_vocabulary,
                f"--teacher_store={results / 'plm_store'}"]))
        else:
            checks.skip(f"cif_hieradist_{precision}", "no PLM store")

    def decode():
        from hieradist_lobes.data.manifest import read_manifest
        from hieradist_lobes.inference import CIFASR

        folder = models.get("cif_fp32")
        if folder is None:
            raise RuntimeError("no fp32 CIF model to decode with")
        asr = CIFASR.from_hparams(source=folder, savedir=folder, run_opts={"device": args.device})
        parameter_device = str(next(asr.mods.parameters()).device)
        if not parameter_device.startswith(args.device.split(":")[0]):
            raise RuntimeError(f"CIFASR's weights are on {parameter_device}, not {args.device}")
        text = asr.transcribe_file(read_manifest(str(corpus / "test.csv"))[0]["wav"])
        if not isinstance(text, str):
            raise RuntimeError(f"transcribe_file returned {type(text).__name__}")
        return {"weights_on": parameter_device, "transcript_characters": len(text)}

    checks.run("cifasr_decode", decode)

    def streaming():
        from hieradist_lobes.data.manifest import read_manifest

        train("cif_streaming", train_cif, [str(hparams / "cif_streaming.yaml"), *cif_vocabulary])()
        wavs = [row["wav"] for row in read_manifest(str(corpus / "test.csv"))[:3]]
        return streaming_matches_whole_files(models["cif_streaming"], wavs, args.device)

    checks.run("cif_streaming", streaming)
    checks.run("cif_fwd_bwd", lambda: cif_fwd_bwd_ms(args.device))
    return finish(checks, summary, args.output)


def finish(checks: Checks, summary: Dict[str, object], output: str) -> int:
    failed = [r["name"] for r in checks.results if r["status"] == "FAIL"]
    summary["passed"] = not failed
    write(summary, output)
    print(f"gpu_check: {len(checks.results) - len(failed)} of {len(checks.results)} checks without failure"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def write(summary: Dict[str, object], output: str) -> None:
    from hieradist_lobes.files import write_json

    write_json(output, summary, indent=2)
    print(f"gpu_check: results in {output}")


if __name__ == "__main__":
    sys.exit(main())
