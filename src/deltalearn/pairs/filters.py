"""Pair filters: each returns the reason a pair is dropped, or None to keep it."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drop_empty: bool = Field(default=True, description="Drop a pair when either answer is empty or only whitespace.")
    drop_identical: bool = Field(default=True, description="Drop a pair whose two answers are the same text (surrounding whitespace ignored).")
    drop_truncated: bool = Field(default=True, description="Drop a pair when either answer was stopped by the token limit.")
    min_length_ratio: float | None = Field(
        default=None, gt=0, description="Drop a pair when len(chosen) / len(rejected), in characters, is below this; null = no bound.")
    max_length_ratio: float | None = Field(
        default=None, gt=0, description="Drop a pair when len(chosen) / len(rejected), in characters, is above this; null = no bound.")


REASONS = ("empty", "identical", "truncated", "length_ratio")


def drop_reason(chosen: dict, rejected: dict, cfg: FilterConfig) -> str | None:
    c, r = chosen["response"], rejected["response"]
    if cfg.drop_empty and (not c.strip() or not r.strip()):
        return "empty"
    if cfg.drop_identical and c.strip() == r.strip():
        return "identical"
    if cfg.drop_truncated and "length" in (chosen.get("finish_reason"), rejected.get("finish_reason")):
        return "truncated"
    if cfg.min_length_ratio is not None or cfg.max_length_ratio is not None:
        ratio = len(c) / max(len(r), 1)
        if (cfg.min_length_ratio is not None and ratio < cfg.min_length_ratio) or (
            cfg.max_length_ratio is not None and ratio > cfg.max_length_ratio
        ):
            return "length_ratio"
    return None


def count_reasons(reasons: list[str | None]) -> dict[str, int]:
    c = Counter(r for r in reasons if r)
    return {k: c.get(k, 0) for k in REASONS}
