"""benchmarks/gpu_check.sh in its CPU-only mode: every check SKIP with the reason, exit 0, the JSON written."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_every_check_is_skipped_with_the_reason(tmp_path):
    output = tmp_path / "out" / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PY": sys.executable}
    completed = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--output", str(output)],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(output.read_text())
    assert result["cuda_available"] is False and result["passed"] is None
    names = [check["name"] for check in result["checks"]]
    assert {"device_tests", "cifasr_decode", "cif_fwd_bwd", "teacher_store", "cif_hieradist_fp16",
            "student_bf16"} <= set(names)
    assert all(check["status"] == "SKIP" and "no CUDA device" in check["reason"] for check in result["checks"])
    skipped_lines = [line for line in completed.stdout.splitlines() if line.startswith("SKIP")]
    assert len(skipped_lines) == len(names)
    assert "GPU checks not run" in completed.stdout
