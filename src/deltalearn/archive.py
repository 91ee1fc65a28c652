"""Copy a run directory's small outputs (records, summaries, per-item evaluations, pairs, answers,
reports) to another directory, leaving weights and checkpoints behind. The same copy back restores
them: every stage's record comes with its outputs, so a later run reuses exactly what its inputs
match and redoes the rest (trained weights are not kept: a condition trained again is retrained).

Studies that outlive one machine are kept this way in the repository (`results/`), a few MB each."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

from .errors import DeltaError
from .io import atomic_path

# What a run directory holds that is large, rebuildable or only for resuming a stopped training.
SKIP_DIRS = {"final", "checkpoints", "tensorboard", "__pycache__"}
SKIP_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".npy", ".npz", ".tmp", ".lock"}
DEFAULT_MAX_BYTES = 8 * 2**20


def _why_skipped(rel: Path, size: int, max_bytes: int) -> str | None:
    if any(p in SKIP_DIRS or p.startswith(".") for p in rel.parts[:-1]):
        return "weights, checkpoint or temporary directory"
    if rel.name.startswith(".") or rel.suffix in SKIP_SUFFIXES:
        return "weights, checkpoint or temporary file"
    if size > max_bytes:
        return f"larger than {max_bytes:,} bytes"
    return None


def archive(src: str | Path, dst: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Mirror src's small files into dst (each copy atomic; identical files untouched; files only in
    dst kept, so an archive gathers a study's conditions over several machines). Returns counts and
    the skipped files with the reason."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DeltaError(f"{src}: not a directory")
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise DeltaError(f"{dst}: must not be {src} itself, inside it, or around it")
    copied, same, kept_bytes, skipped = 0, 0, 0, []
    for f in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        rel, size = f.relative_to(src), f.stat().st_size
        why = _why_skipped(rel, size, max_bytes)
        if why:
            skipped.append({"path": str(rel), "bytes": size, "why": why})
            continue
        target = dst / rel
        kept_bytes += size
        if target.is_file() and filecmp.cmp(f, target, shallow=False):
            same += 1
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(f, tmp)
        copied += 1
    return {"copied": copied, "unchanged": same, "bytes": kept_bytes, "skipped": skipped}
