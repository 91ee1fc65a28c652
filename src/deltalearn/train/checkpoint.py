"""The one checkpoint writer: trainable weights (safetensors), optimizer, scheduler, RNG and data
position, written to a temporary directory and renamed into place, then `latest` is replaced.
A kill at any moment leaves the previous checkpoint complete and pointed to.

Sharded runs (DeepSpeed ZeRO, FSDP) write through accelerate's `save_state`, every process its own
shard, into the same kind of temporary directory; the main process renames it, points `latest` at
it and prunes, as for a plain run."""

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


def save_sharded(root: Path, step: int, accelerator, scheduler, keep: int) -> Path:
    """Every process calls this: each writes its shard of the model and optimizer state."""
    import os

    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.partial"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "accelerate"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_text_atomic(root / "latest", final.name + "\n")
        _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def load_sharded(path: Path, accelerator, scheduler) -> int:
    accelerator.load_state(str(path / "accelerate"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    return int(json.loads((path / "state.json").read_text())["step"])


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
