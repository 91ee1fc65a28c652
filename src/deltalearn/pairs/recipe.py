"""The pairs recipe (`kind: pairs`): prompts -> generate (each ladder tier) -> pairs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import RecipeErrors
from ..generate.prompts import PromptsConfig
from ..generate.run import GenerateConfig
from ..models.ladder import Ladder, default_ladder
from .filters import FilterConfig
from .strategies import StrategyConfig


class PairsConfig(StrategyConfig):
    filters: FilterConfig = Field(default_factory=FilterConfig)


class PairsRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["pairs"] = "pairs"
    name: str = "pairs"
    out_dir: str = "runs/pairs"
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    ladder: Ladder = Field(default_factory=default_ladder)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)

    @field_validator("ladder", mode="before")
    @classmethod
    def _named_ladder(cls, v):
        if v == "default":
            return default_ladder()
        return v

    @model_validator(mode="after")
    def _tiers_exist(self) -> "PairsRecipe":
        names = self.ladder.names
        p = self.pairs
        errors = [(f"pairs.{key}", f"unknown tier {name!r} (ladder has: {', '.join(names)})")
                  for key, values in (("tiers", p.tiers or []), ("chosen", [p.chosen]), ("student", [p.student]),
                                      ("rejected", [p.rejected] if isinstance(p.rejected, str) else p.rejected or []))
                  for name in values if name is not None and name not in names]
        if errors:
            raise RecipeErrors(errors)
        return self

    def problems(self) -> list[tuple[str, str]]:
        from ..models.loading import source_problems

        return [(f"prompts.{k}", m) for k, m in self.prompts.problems()] + [
            (f"ladder.tiers.{i}.model", m) for i, t in enumerate(self.ladder.tiers) for m in source_problems(t)]
