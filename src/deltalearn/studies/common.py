"""Pieces every study shares: a training stage as a recipe block, and training one from a start model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_serializer, model_validator

from ..errors import RecipeErrors
from ..models.spec import TierSpec
from ..train.config import TrainConfig
from ..rundir import FINAL, RESULTS

# A stage's own keys (the rest of a train recipe goes under `options`); each is TrainConfig's field,
# optional, unset = the preset's value. What the study itself sets cannot be a stage's.
STAGE_KEYS = ("method", "beta", "lr", "global_batch_size", "micro_batch_size", "epochs", "max_length", "nll_coef")
SET_BY_STUDY = frozenset({"kind", "model", "data", "out_dir", "seed", "name", "on_change"})
NOT_PER_CONDITION = SET_BY_STUDY | {"method", "preset"}  # a condition names its method; its stage, the preset


def _override(key: str, unset: str):
    """TrainConfig's field `key` as an optional override: its type or None, its description, its marks."""
    from pydantic.fields import FieldInfo

    f = TrainConfig.model_fields[key]
    return f.annotation | None, FieldInfo.merge_field_infos(f, default=None, description=f"{f.description} {unset}")


class _Stage(BaseModel):
    """One training run's settings inside a study recipe. Unset values come from `preset` (`cpu` for
    the embedded model here, `paper` for the released 8B settings); `options` takes any other key of
    a train recipe (dtype, gradient_checkpointing, lora, save_every, tracker, ...). Every value is
    checked as the train recipe it becomes, when the study recipe loads."""

    model_config = ConfigDict(extra="forbid")
    preset: Literal["cpu", "paper"] = Field(default="cpu", description="The train preset that fills this stage's unset keys: cpu or paper.")
    # method, beta, lr, ... (STAGE_KEYS), then options: added by create_model below

    @model_validator(mode="after")
    def _fill_from_preset(self) -> "_Stage":
        from pydantic import ValidationError

        from ..config import error_list
        from ..train.config import preset_value

        for key in STAGE_KEYS:
            if getattr(self, key) is None:
                setattr(self, key, preset_value(self.preset, key))
        errors = [(f"options.{k}", "set by the study or by a key of the stage itself, not in options")
                  for k in sorted(set(self.options) & (set(STAGE_KEYS) | SET_BY_STUDY | {"preset"}))]
        if not errors:
            try:
                self.train_config(TierSpec(name="check"), Path("pairs.jsonl"), Path("check"), 0)
            except ValidationError as e:
                errors = [(k if not k or k.split(".")[0] in STAGE_KEYS else f"options.{k}", m) for k, m in error_list(e)]
        if errors:
            raise RecipeErrors(errors)
        return self

    def train_config(self, model: TierSpec, data: Path, out: Path, seed: int, on_change: str = "refuse"):
        return TrainConfig.model_validate({
            "tracker": "none", **self.options, "preset": self.preset, **{k: getattr(self, k) for k in STAGE_KEYS},
            "model": model.model_dump(), "data": str(data), "out_dir": str(out), "seed": seed, "name": out.name,
            "on_change": on_change})

    def with_overrides(self, overrides: "TrainOverrides", method: str) -> "_Stage":
        """This stage with a condition's own keys on top: a stage key replaces it (null leaves it as the
        stage has it), any other joins options."""
        own = overrides.model_dump(exclude_unset=True)
        top = {k: v for k in STAGE_KEYS if k in own and (v := own.pop(k)) is not None}
        return type(self).model_validate({**self.model_dump(), **top, "options": {**self.options, **own}, "method": method})


Stage = create_model("Stage", __base__=_Stage, __doc__=_Stage.__doc__,
                     **{k: _override(k, "Unset = the preset's.") for k in STAGE_KEYS},
                     options=(dict, Field(default_factory=dict, description="Any other train recipe key (dtype, lora, save_every, tracker, ...).")))


class _Overrides(BaseModel):
    """A condition's own training keys over its stage's: any train recipe key but those the study sets,
    the method (the condition's own key) and the preset (its stage's).
    Only the keys given are kept (and dumped), so an override changes exactly what it names."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _only_set(self, handler):
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


TrainOverrides = create_model("TrainOverrides", __base__=_Overrides, __doc__=_Overrides.__doc__, **{
    k: _override(k, "Unset = the stage's.") for k in TrainConfig.model_fields if k not in NOT_PER_CONDITION})


def is_bookkeeping(cfg):
    """Whether a dotted key of the study's settings is bookkeeping: marked so in its recipe model
    (config.BOOKKEEPING: `eval.suites`, `dpo.micro_batch_size`), or such a key of a train recipe in a
    stage's options (`dpo.options.save_every`), which changes how a run is carried out, not what it computes."""
    from ..config import bookkeeping_keys
    from ..train.config import BOOKKEEPING_KEYS

    stages = [name for name in type(cfg).model_fields if isinstance(getattr(cfg, name), _Stage)]
    skip = [*bookkeeping_keys(type(cfg)), *(f"{s}.options.{k}" for s in stages for k in BOOKKEEPING_KEYS)]
    empty_options = {f"{s}.options" for s in stages}  # `{}` flattens to a leaf: the same as bookkeeping-only options
    return lambda key: key in empty_options or any(key == b or key.startswith(b + ".") for b in skip)


def study_inputs(cfg) -> dict:
    """A study's settings minus its bookkeeping keys, as flat keys."""
    from .. import record

    skip = is_bookkeeping(cfg)
    return {k: v for k, v in record.flatten(cfg.model_dump(mode="json")).items() if not skip(k)}


def claim_study(cfg) -> None:
    """Before any work: refuse a run directory that holds this study made with other settings,
    naming each key that differs with both values (e.g. `train_limit 48 -> 24`). With `on_change:
    rerun` it is accepted and every stage redoes what the new settings change (each stage checks
    its own inputs) and reuses what they do not. A key that is bookkeeping now is no difference,
    though an older record may hold it."""
    from .. import record

    out = Path(cfg.out_dir)
    inputs = study_inputs(cfg)
    legacy = not (out / record.RECORD).is_file() and (out / RESULTS).is_file()
    record.check(out, "study", inputs, cfg.on_change, legacy=legacy, what=f"a {cfg.kind} study",
                 ignore=is_bookkeeping(cfg))
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps_in(out)
    record.mark(out, "study", inputs, "started")


def finish_study(cfg) -> None:
    from .. import record

    record.mark(Path(cfg.out_dir), "study", study_inputs(cfg), "done")


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
