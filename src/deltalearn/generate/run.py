"""Generate every tier's answers to a prompt set, resumably, with progress and a summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import BOOKKEEPING

from .. import faults
from ..chat import user_turn
from ..errors import DeltaError
from ..models.ladder import Ladder
from ..models.spec import TierSpec
from ..rundir import RunDir
from .base import GenerationSettings
from .cache import GenerationCache, record_key
from .openai_api import EndpointConfig
from .prompts import Prompt
from .vllm_backend import VLLMConfig


class GenerateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["hf", "vllm", "openai"] = Field(
        default="hf", description="Engine: hf (transformers, in process), vllm (a vLLM worker) or openai (an endpoint).")
    batch_size: int = Field(default=16, ge=1, description="Prompts sent to the engine at once.", json_schema_extra=BOOKKEEPING)
    dtype: str = Field(default="float32", description="hf backend: the weights' dtype (float32, bfloat16, ...).")
    device: str = Field(default="cpu", description="hf backend: the torch device (cpu, cuda, cuda:1, ...).")
    settings: GenerationSettings = Field(default_factory=GenerationSettings, description="Decoding settings.")
    endpoint: EndpointConfig | None = Field(default=None, description="The OpenAI-compatible endpoint; needed by backend openai.")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="vllm backend: the engine's settings.")


def tier_key_fingerprint(tier: TierSpec, cfg: GenerateConfig) -> str:
    from ..io import fingerprint
    from ..models.loading import tier_fingerprint

    if cfg.backend == "openai":
        return fingerprint(["endpoint", cfg.endpoint.base_url.rstrip("/"), cfg.endpoint.model or tier.model])
    return tier_fingerprint(tier)


def make_backend(tier: TierSpec, cfg: GenerateConfig):
    if cfg.backend == "openai":
        from .openai_api import OpenAIBackend

        if cfg.endpoint is None:
            raise DeltaError("generate.backend is 'openai' but generate.endpoint is not set")
        ep = cfg.endpoint.model_copy(update={"model": cfg.endpoint.model or tier.model, "size": tier.size or cfg.endpoint.size})
        return OpenAIBackend(ep)
    if cfg.backend == "vllm":
        from ..models.loading import materialise, tier_fingerprint
        from .vllm_backend import VLLMBackend
        from transformers import AutoTokenizer

        path = materialise(tier)
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=tier.trust_remote_code)
        return VLLMBackend(path, tok, size=tier.size, fingerprint=tier_fingerprint(tier), model_id=tier.model, cfg=cfg.vllm)
    from ..models.loading import load_model
    from .hf import HFBackend

    return HFBackend(load_model(tier, dtype=cfg.dtype, device=cfg.device))


def generate_tier(
    tier: TierSpec,
    prompts: list[Prompt],
    cfg: GenerateConfig,
    cache_path: str | Path,
    *,
    backend=None,
    progress=None,
    label: str | None = None,
) -> dict:
    """Answer every prompt with one tier; returns {prompt_id: record} and fills the cache."""
    cache = GenerationCache(cache_path)
    settings = cfg.settings.key()
    fp = backend.fingerprint if backend is not None else tier_key_fingerprint(tier, cfg)
    keys = {p.id: record_key(fp, p.id, p.text, settings) for p in prompts}
    todo = [p for p in prompts if keys[p.id] not in cache]
    stats = {"tier": tier.name, "prompts": len(prompts), "cached": len(prompts) - len(todo), "generated": 0,
             "new_tokens": 0, "seconds": 0.0, "size": None}
    if todo:
        owned = backend is None
        backend = backend or make_backend(tier, cfg)
        try:
            # Sorting by length keeps each batch's padding small.
            todo.sort(key=lambda p: backend.prompt_length(user_turn(p.text)))
            task = progress.add_task(label or tier.name, total=len(todo), tps="") if progress else None
            t0 = time.perf_counter()
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                outs = backend.generate([user_turn(p.text) for p in batch], cfg.settings)
                rows = [
                    {
                        "key": keys[p.id],
                        "tier": tier.name,
                        "model": tier.model,
                        "model_fingerprint": fp,
                        "size": backend.size,
                        "degrade": tier.degrade.model_dump() if tier.degrade else None,
                        "prompt_id": p.id,
                        "prompt": p.text,
                        "category": p.category,
                        "split": p.split,
                        "rendered_prompt": o.rendered_prompt,
                        "response": o.text,
                        "n_tokens": o.n_tokens,
                        "finish_reason": o.finish_reason,
                        "settings": settings,
                        "backend": cfg.backend,
                    }
                    for p, o in zip(batch, outs)
                ]
                cache.add(rows)
                faults.point("generate.batch")
                stats["generated"] += len(rows)
                stats["new_tokens"] += sum(o.n_tokens for o in outs)
                elapsed = time.perf_counter() - t0
                if progress:
                    progress.update(task, advance=len(batch), tps=f"{stats['new_tokens'] / elapsed:.1f} tok/s")
            stats["seconds"] = time.perf_counter() - t0
            stats["size"] = backend.size
        finally:
            if owned:
                backend.close()
    records = {p.id: cache.get(keys[p.id]) for p in prompts}
    if stats["size"] is None:
        stats["size"] = next((r["size"] for r in records.values() if r.get("size")), tier.size)
    return {"records": records, "stats": stats}


def generate_ladder(ladder: Ladder, prompts: list[Prompt], cfg: GenerateConfig, out_dir: str | Path, *, console=None):
    """Run every tier in turn (one model in memory at a time); returns ({tier: records}, [stats])."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out_dir = Path(out_dir)
    results, all_stats = {}, []
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        for tier in ladder.tiers:
            res = generate_tier(tier, prompts, cfg, RunDir(out_dir).answers(tier.name), progress=progress)
            results[tier.name] = res["records"]
            all_stats.append(res["stats"])
    return results, all_stats
