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
    filters: FilterConfig = Field(default_factory=FilterConfig, description="Which pairs are dropped before they are written.")


class PairsRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["pairs"] = Field(default="pairs", description="Recipe kind: pairs (prompts -> every tier's answers -> pairs).")
    name: str = Field(default="pairs", description="A label for this recipe (kept in manifest.json with the rest of it).")
    out_dir: str = Field(default="runs/pairs", description="Directory for the answers' caches, the pair datasets and manifest.json.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="The prompts every tier answers.")
    ladder: Ladder = Field(default_factory=default_ladder, description="The tiers that answer, or `default` (the embedded model and two weaker cuts of it).")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="How the answers are generated: backend, batch size, decoding.")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="Which tiers' answers are paired (chosen over rejected), and the filters.")

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
