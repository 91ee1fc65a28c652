"""Preference datasets in TRL's conversational format, with provenance columns per row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..chat import assistant_turn, user_turn
from ..errors import DeltaError, where
from ..io import atomic_dir, read_jsonl, write_jsonl_atomic
from .filters import FilterConfig, count_reasons, drop_reason
from .strategies import PairSpec

REQUIRED = ("prompt", "chosen", "rejected")


def pair_row(chosen: dict, rejected: dict) -> dict:
    return {
        "prompt": user_turn(chosen["prompt"]),
        "chosen": assistant_turn(chosen["response"]),
        "rejected": assistant_turn(rejected["response"]),
        "prompt_id": chosen["prompt_id"],
        "category": chosen.get("category"),
        "split": chosen.get("split"),
        "chosen_tier": chosen["tier"],
        "rejected_tier": rejected["tier"],
        "chosen_model": chosen["model"],
        "rejected_model": rejected["model"],
        "chosen_size": chosen.get("size"),
        "rejected_size": rejected.get("size"),
        "chosen_tokens": chosen.get("n_tokens"),
        "rejected_tokens": rejected.get("n_tokens"),
        "generation": json.dumps(chosen.get("settings"), sort_keys=True),
        "label_source": "size_heuristic",
    }


def build_pairs(spec: PairSpec, generations: dict[str, dict[str, dict]], filters: FilterConfig) -> tuple[list[dict], dict]:
    """Pair two tiers' answers prompt by prompt; returns (rows, summary of what was dropped)."""
    chosen, rejected = generations[spec.chosen], generations[spec.rejected]
    rows, reasons = [], []
    for pid, c in chosen.items():
        r = rejected.get(pid)
        if r is None:
            reasons.append("missing")
            continue
        reason = drop_reason(c, r, filters)
        reasons.append(reason)
        if reason is None:
            rows.append(pair_row(c, r))
    cut = sum(1 for row in rows if _was_cut(generations, spec, row["prompt_id"]))
    summary = {"dataset": spec.name, "prompts": len(chosen), "kept": len(rows), **count_reasons(reasons), "cut": cut}
    return rows, summary


def _was_cut(generations, spec: PairSpec, pid: str) -> bool:
    return "length" in (generations[spec.chosen][pid].get("finish_reason"), generations[spec.rejected][pid].get("finish_reason"))


def write_pairs(rows: list[dict], out: str | Path) -> dict:
    """Write `<out>.jsonl` and the saved HF dataset `<out>/`, each atomically."""
    from datasets import Dataset

    out = Path(out)
    jsonl = out.with_name(out.name + ".jsonl")  # not with_suffix: tier names such as qwen-coder-0.5b hold dots
    write_jsonl_atomic(jsonl, rows)
    if rows:
        with atomic_dir(out) as tmp:
            Dataset.from_list(rows).save_to_disk(str(tmp))
    elif out.exists():
        shutil.rmtree(out)
    return {"jsonl": str(jsonl), "saved_dataset": str(out) if rows else None}


def load_pairs(path: str | Path) -> list[dict]:
    """Read a pairs JSONL or saved dataset and check every row; errors name the file, row and field."""
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        rows = load_from_disk(str(path)).to_list()
    else:
        rows = read_jsonl(path)
    if not rows:
        raise DeltaError(f"{path}: no pairs")
    for n, row in enumerate(rows, 1):
        for field in REQUIRED:
            if field not in row:
                raise DeltaError(f'{where(path, n, field)}: missing (a pair needs "prompt", "chosen", "rejected")')
            value = row[field]
            text = message_text(value)
            if text is None:
                raise DeltaError(f"{where(path, n, field)}: expected text or a list of chat messages")
            if not text.strip():
                raise DeltaError(f"{where(path, n, field)}: is empty")
    return rows


def message_text(value) -> str | None:
    """A pair field's text: the string itself, or the last message's content; None if neither."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return value[-1]["content"]
    return None
