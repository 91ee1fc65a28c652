"""Pieces every study shares: a training stage as a recipe block, and training one from a start model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models.spec import TierSpec

_OWN = ("method", "beta", "lr", "global_batch_size", "micro_batch_size", "epochs", "max_length", "nll_coef")


class Stage(BaseModel):
    """One training run's settings inside a study recipe. Unset values come from `preset` (`cpu` for
    the embedded model here, `paper` for the released 8B settings); `options` takes any other key of
    a train recipe (dtype, gradient_checkpointing, lora, save_every, tracker, ...)."""

    model_config = ConfigDict(extra="forbid")
    preset: Literal["cpu", "paper"] = "cpu"
    method: str | None = None
    beta: float | None = None
    lr: float | None = None
    global_batch_size: int | None = None
    micro_batch_size: int | None = None
    epochs: int | None = None
    max_length: int | None = None
    nll_coef: float = 0.0
    options: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_from_preset(self) -> "Stage":
        from ..train.config import PRESETS, TrainConfig

        for key in _OWN:
            if getattr(self, key) is None:
                setattr(self, key, PRESETS[self.preset][key])
        unknown = sorted(set(self.options) - set(TrainConfig.model_fields) | set(self.options) & {*_OWN, "model", "data", "out_dir"})
        if unknown:
            raise ValueError(f"options: {', '.join(unknown)} cannot be set here (unknown train keys, or set by the study)")
        return self

    def train_config(self, model: TierSpec, data: Path, out: Path, seed: int):
        from ..train.config import TrainConfig

        return TrainConfig.model_validate({
            "tracker": "none", **self.options, "preset": self.preset, **{k: getattr(self, k) for k in _OWN},
            "model": model.model_dump(), "data": str(data), "out_dir": str(out), "seed": seed, "name": out.name})


def train_stage(stage: Stage, model: TierSpec, data: Path, out: Path, seed: int, console) -> Path:
    """Train `model` on `data` (a pairs JSONL) into `out`; returns the final weights' directory.
    A finished run of the same settings is not trained again, so a study that stopped part-way
    resumes where it was (and a changed setting is refused, never silently reused)."""
    from ..train.loop import same_config, train

    cfg = stage.train_config(model, data, out, seed)
    if (out / "summary.json").is_file() and same_config(out, cfg):
        return out / "final"
    train(cfg, console=console)
    return out / "final"
