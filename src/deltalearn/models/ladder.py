"""A ladder: tiers ordered by size, so `bigger is better` can label pairs as in the paper."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .spec import EMBEDDED, Degradation, TierSpec

# Layer indices dropped from SmolLM2-135M-Instruct's 30 to make the default weaker tiers.
# Chosen by measuring bits/char on the shipped prose (docs/ladder.md): late-middle layers give
# coherent but measurably worse text (1.06 -> 1.26 -> 1.37 bits/char); DROP4 contains DROP2.
DROP2 = [20, 24]
DROP4 = [12, 16, 20, 24]


class Ladder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[TierSpec] = Field(min_length=1, description="The tiers, names unique; list the strongest first (grid order follows it).")

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: list[TierSpec]) -> list[TierSpec]:
        names = [t.name for t in tiers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"tier names must be unique; repeated: {sorted(dup)}")
        return tiers

    def tier(self, name: str) -> TierSpec:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]


def default_ladder() -> Ladder:
    return Ladder(
        tiers=[
            TierSpec(name="smollm2-135m", model=EMBEDDED),
            TierSpec(name="smollm2-135m-drop2", model=EMBEDDED, degrade=Degradation(drop_layers=DROP2)),
            TierSpec(name="smollm2-135m-drop4", model=EMBEDDED, degrade=Degradation(drop_layers=DROP4)),
        ]
    )
