"""Copy a run directory's small outputs (records, summaries, per-item evaluations, pairs, answers,
reports) to another directory, leaving weights and checkpoints behind. The same copy back restores
them: every stage's record comes with its outputs, so a later run reuses exactly what its inputs
match and redoes the rest (trained weights are not kept: a condition trained again is retrained).

Studies that outlive one machine are kept this way in the repository (`results/`), so an archive keeps
one copy of each thing: a pairs file's saved HF dataset (the same rows as the JSONL beside it) stays
behind, so do an evaluation's answer and log-likelihood caches (each suite's per-item file holds the same
answers and scores, and a restored evaluation is reused from those), and so does a plot that no report
in the archive links to. A delta study's pairs stay behind too: its data stage rebuilds them from the
answers (archive the recipe's `answers_dir` beside the study) in seconds and byte for byte, and the
audit's and training's records, keyed by the pairs' content, check that. Only an evaluation redone
with other inputs generates again."""

from __future__ import annotations

import filecmp
import re
import shutil
from pathlib import Path

from .errors import DeltaError
from .io import atomic_path
from .rundir import HEAVY_DIRS, HEAVY_SUFFIXES, RunDir, read_summary

DEFAULT_MAX_BYTES = 8 * 2**20


_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
_EVAL_CACHE = re.compile(r"(generations(-[\w.]+)?|loglik_cache)\.jsonl")  # rundir.answer_cache, loglik_cache


def _linked_plots(src: Path) -> set[Path]:
    """Every image a Markdown file under src links to, as a path relative to src."""
    out = set()
    for md in src.rglob("*.md"):
        for target in _IMAGE_LINK.findall(md.read_text(errors="replace")):
            path = (md.parent / target).resolve()
            if path.is_relative_to(src.resolve()):
                out.add(path.relative_to(src.resolve()))
    return out


def _duplicate(src: Path, rel: Path, linked: set[Path]) -> str | None:
    if RunDir(src).rebuilt_pairs(rel):
        return "a study's pairs (its data stage rebuilds them from the answers)"
    if rel.suffix == ".png" and rel not in linked:
        return "a plot no report links to"
    if _EVAL_CACHE.fullmatch(rel.name) and _is_eval_dir(src / rel.parent):
        return "an evaluation's cache (each suite's file holds its answers)"
    for parent in rel.parents:
        if parent != Path(".") and (src / parent.parent / f"{parent.name}.jsonl").is_file() and \
                (src / parent / "dataset_info.json").is_file():
            return f"saved dataset of {parent.name}.jsonl (the same rows)"
    return None


def _is_eval_dir(d: Path) -> bool:
    try:
        return "suites" in read_summary(d)
    except (OSError, ValueError, TypeError):
        return False


def _why_skipped(rel: Path, size: int, max_bytes: int) -> str | None:
    if any(p in HEAVY_DIRS or p.startswith(".") for p in rel.parts[:-1]):
        return "weights, checkpoint or temporary directory"
    if rel.name.startswith(".") or rel.suffix in HEAVY_SUFFIXES:
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
    linked = _linked_plots(src)
    for f in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        rel, size = f.relative_to(src), f.stat().st_size
        why = _why_skipped(rel, size, max_bytes) or _duplicate(src, rel, linked)
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
