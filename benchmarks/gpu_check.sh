#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): about 8 minutes on one GPU after `make install`;
# on a machine without CUDA it reports every check as SKIP and exits 0.
#   bash benchmarks/gpu_check.sh [--output gpu_check.json] [--device cuda|cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/gpu_check.py "$@"
