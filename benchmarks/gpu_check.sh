#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) from the repository root, on a machine with torch,
# transformers and accelerate; writes ${OUT:-.}/gpu_check.json. Refuses in one line without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu_check.json"
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" timeout 480 python benchmarks/gpu_check.py --out "$out" "$@"
