"""Which tier's answer is chosen and which rejected: the paper's size heuristic and its variants."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import DeltaError


@dataclass(frozen=True)
class PairSpec:
    chosen: str
    rejected: str

    @property
    def name(self) -> str:
        return f"{self.chosen}__over__{self.rejected}"


class StrategyConfig(BaseModel):
    """strategy:
    - size: adjacent tiers by parameter count, bigger chosen (of `tiers`, default the whole ladder)
    - explicit: `chosen` over `rejected`, whatever their sizes (reversed and zero-delta controls)
    - self_vs_weaker: `student`'s own answers chosen over each smaller tier (or `rejected`)
    - all_pairs: every pair of `tiers`, bigger chosen (7 sizes give the paper's 21 datasets)
    """

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["size", "explicit", "self_vs_weaker", "all_pairs"] = Field(
        default="size", description="size (adjacent tiers, bigger chosen), explicit, self_vs_weaker or all_pairs (every pair, bigger chosen).")
    tiers: list[str] | None = Field(
        default=None, description="Tier names that `size` and `all_pairs` pair; null = the whole ladder.")
    chosen: str | None = Field(default=None, description="`explicit`: the tier whose answers are chosen.")
    rejected: str | list[str] | None = Field(
        default=None, description="`explicit`: the rejected tier; `self_vs_weaker`: rejected tiers (null = every smaller one).")
    student: str | None = Field(default=None, description="`self_vs_weaker`: the tier whose own answers are chosen.")

    @model_validator(mode="after")
    def _needs(self) -> "StrategyConfig":
        if self.strategy == "explicit" and not (self.chosen and isinstance(self.rejected, str)):
            raise ValueError("strategy 'explicit' needs `chosen` and `rejected` tier names")
        if self.strategy == "self_vs_weaker" and not self.student:
            raise ValueError("strategy 'self_vs_weaker' needs `student` (a tier name)")
        return self


def check_tier_names(cfg: StrategyConfig, ladder_names: list[str]) -> None:
    """Fail before any generation when the strategy names a tier the ladder does not have."""
    for name in [*(cfg.tiers or []), cfg.chosen, cfg.student, *_as_list(cfg.rejected)]:
        if name is not None and name not in ladder_names:
            raise DeltaError(f'pairs: unknown tier "{name}" (ladder has: {", ".join(ladder_names)})')


def plan_pairs(cfg: StrategyConfig, sizes: dict[str, int]) -> list[PairSpec]:
    """Turn a strategy and the tiers' sizes into (chosen, rejected) tier pairs."""
    check_tier_names(cfg, list(sizes))
    if cfg.strategy == "explicit":
        return [PairSpec(cfg.chosen, cfg.rejected)]
    if cfg.strategy == "self_vs_weaker":
        rejected = _as_list(cfg.rejected) or [t for t in sizes if sizes[t] < sizes[cfg.student]]
        if not rejected:
            raise DeltaError(f'pairs: no tier is smaller than the student "{cfg.student}"')
        return [PairSpec(cfg.student, r) for r in rejected]
    names = cfg.tiers or list(sizes)
    if len(names) < 2:
        raise DeltaError("pairs: the size heuristic needs at least two tiers")
    ranked = sorted(names, key=lambda n: -sizes[n])
    for a, b in zip(ranked, ranked[1:]):
        if sizes[a] == sizes[b]:
            raise DeltaError(f'pairs: tiers "{a}" and "{b}" have the same size {sizes[a]}; the size heuristic cannot order them (declare `size`)')
    if cfg.strategy == "size":
        return [PairSpec(a, b) for a, b in zip(ranked, ranked[1:])]
    return [PairSpec(a, b) for a, b in combinations(ranked, 2)]


def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)
