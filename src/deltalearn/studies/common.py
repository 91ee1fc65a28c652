"""Pieces every study shares: a training stage as a recipe block, and training one from a start model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import RecipeErrors
from ..models.spec import TierSpec
from ..train.methods import MethodName
from ..rundir import FINAL, RESULTS

_OWN = ("method", "beta", "lr", "global_batch_size", "micro_batch_size", "epochs", "max_length", "nll_coef")
_SET_BY_STUDY = {"model", "data", "out_dir", "seed", "name", "preset", "on_change"}


class Stage(BaseModel):
    """One training run's settings inside a study recipe. Unset values come from `preset` (`cpu` for
    the embedded model here, `paper` for the released 8B settings); `options` takes any other key of
    a train recipe (dtype, gradient_checkpointing, lora, save_every, tracker, ...). Every value is
    checked as the train recipe it becomes, when the study recipe loads."""

    model_config = ConfigDict(extra="forbid")
    preset: Literal["cpu", "paper"] = Field(default="cpu", description="The train preset that fills this stage's unset keys: cpu or paper.")
    method: MethodName | None = Field(default=None, description="Loss: dpo_norm, dpo, ipo, simpo or sft; unset = the preset's.")
    beta: float | None = Field(default=None, description="beta of the preference losses; unset = the preset's.")
    lr: float | None = Field(default=None, description="Peak learning rate; unset = the preset's.")
    global_batch_size: int | None = Field(default=None, description="Pairs per optimizer step, over all processes; unset = the preset's.")
    micro_batch_size: int | None = Field(default=None, description="Pairs per forward pass, per process; unset = the preset's.")
    epochs: int | None = Field(default=None, description="Passes over the pairs; unset = the preset's.")
    max_length: int | None = Field(default=None, description="Most tokens of prompt plus answer; unset = the preset's.")
    nll_coef: float = Field(default=0.0, description="Weight of an extra NLL term on the chosen answer; 0 = off.")
    options: dict = Field(default_factory=dict, description="Any other train recipe key (dtype, lora, save_every, tracker, ...).")

    @model_validator(mode="after")
    def _fill_from_preset(self) -> "Stage":
        from pydantic import ValidationError

        from ..config import error_list
        from ..train.config import PRESETS

        for key in _OWN:
            if getattr(self, key) is None:
                setattr(self, key, PRESETS[self.preset][key])
        errors = [(f"options.{k}", "set by the study or by a key of the stage itself, not in options")
                  for k in sorted(set(self.options) & (set(_OWN) | _SET_BY_STUDY))]
        if not errors:
            try:
                self.train_config(TierSpec(name="check"), Path("pairs.jsonl"), Path("check"), 0)
            except ValidationError as e:
                errors = [(k if k.split(".")[0] in _OWN else f"options.{k}", m) for k, m in error_list(e)]
        if errors:
            raise RecipeErrors(errors)
        return self

    def train_config(self, model: TierSpec, data: Path, out: Path, seed: int, on_change: str = "refuse"):
        from ..train.config import TrainConfig

        return TrainConfig.model_validate({
            "tracker": "none", **self.options, "preset": self.preset, **{k: getattr(self, k) for k in _OWN},
            "model": model.model_dump(), "data": str(data), "out_dir": str(out), "seed": seed, "name": out.name,
            "on_change": on_change})


def bookkeeping_keys(cfg, bookkeeping: set[str]):
    """Whether a dotted key of the study's settings is bookkeeping: one of `bookkeeping` (`eval.suites`)
    or a training stage's own (`dpo.options.save_every`, `dpo.micro_batch_size`), which changes how
    a run is carried out, not what it computes, as for a train recipe."""
    from ..train.config import BOOKKEEPING

    stages = [name for name in type(cfg).model_fields if isinstance(getattr(cfg, name), Stage)]
    skip = [*bookkeeping, *(f"{s}.{k}" for s in stages for k in BOOKKEEPING), *(f"{s}.options.{k}" for s in stages for k in BOOKKEEPING)]
    empty_options = {f"{s}.options" for s in stages}  # `{}` flattens to a leaf: the same as bookkeeping-only options
    return lambda key: key in empty_options or any(key == b or key.startswith(b + ".") for b in skip)


def study_inputs(cfg, bookkeeping: set[str]) -> dict:
    """A study's settings minus its bookkeeping keys, as flat keys."""
    from .. import record

    is_bookkeeping = bookkeeping_keys(cfg, bookkeeping)
    return {k: v for k, v in record.flatten(cfg.model_dump(mode="json")).items() if not is_bookkeeping(k)}


def claim_study(cfg, bookkeeping: set[str]) -> None:
    """Before any work: refuse a run directory that holds this study made with other settings,
    naming each key that differs with both values (e.g. `train_limit 48 -> 24`). With `on_change:
    rerun` it is accepted and every stage redoes what the new settings change (each stage checks
    its own inputs) and reuses what they do not. A key that is bookkeeping now is no difference,
    though an older record may hold it."""
    from .. import record

    out = Path(cfg.out_dir)
    inputs = study_inputs(cfg, bookkeeping)
    legacy = not (out / record.RECORD).is_file() and (out / RESULTS).is_file()
    record.check(out, "study", inputs, cfg.on_change, legacy=legacy, what=f"a {cfg.kind} study",
                 ignore=bookkeeping_keys(cfg, bookkeeping))
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps_in(out)
    record.mark(out, "study", inputs, "started")


def finish_study(cfg, bookkeeping: set[str]) -> None:
    from .. import record

    record.mark(Path(cfg.out_dir), "study", study_inputs(cfg, bookkeeping), "done")


def remove_stale_temps_in(out: Path) -> None:
    """What a killed atomic write left anywhere in a study's run directory (it has one owner: this run)."""
    from ..io import remove_stale_temps

    for d in [out, *(p for p in out.rglob("*") if p.is_dir() and not p.name.startswith("."))]:
        remove_stale_temps(d)


def train_stage(stage: Stage, model: TierSpec, data: Path, out: Path, seed: int, console, on_change: str = "refuse") -> Path:
    """Train `model` on `data` (a pairs JSONL) into `out`; returns the final weights' directory.
    A finished run of the same inputs (settings, the pairs' content, the start model's weights) is
    reused and a stopped one resumed; a run of other inputs is refused, or with `rerun` redone."""
    from ..train.loop import train

    train(stage.train_config(model, data, out, seed, on_change), console=console)
    return out / FINAL
