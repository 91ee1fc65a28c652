"""The one checkpoint writer: trainable weights (safetensors), optimizer, scheduler, RNG and data
position, written to a temporary directory and renamed into place, then `latest` is replaced.
A kill at any moment leaves the previous checkpoint complete and pointed to.

Sharded runs (DeepSpeed ZeRO, FSDP2) write every process's shard into the same kind of temporary
directory through their engine (train/engines.py); the main process renames it, points `latest` at
it and prunes with `_prune`, as for a plain run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import faults
from ..io import atomic_dir, write_text_atomic


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Only what training changes: the LoRA adapter, or every parameter that requires grad."""
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, state: dict, keep: int) -> Path:
    final = root / f"step-{step:07d}"
    with atomic_dir(final) as tmp:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
    faults.point("checkpoint.before_latest")
    write_text_atomic(root / "latest", final.name + "\n")
    _prune(root, keep)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = set(weights) - set(params)
    if missing:
        raise RuntimeError(f"{path}: checkpoint has parameters the model lacks: {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
