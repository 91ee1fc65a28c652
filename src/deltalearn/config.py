"""Recipes: YAML files validated by pydantic, every error reported at once with its file and key.

The general loader: it knows no stage. Each recipe kind's model lives beside its stage
(pairs/recipe.py, train/config.py, studies/*/study.py); `recipes.py` maps `kind:` to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import DeltaError, RecipeErrors

T = TypeVar("T", bound=BaseModel)

# `Field(..., json_schema_extra=BOOKKEEPING)`: the key changes how work is logged, saved, batched or
# split into invocations, not what it computes. Records leave such keys out of the inputs that decide
# reuse (train/loop.py, studies/common.py), so changing one never blocks a reuse or a resume.
BOOKKEEPING = {"bookkeeping": True}


def bookkeeping_keys(model: type[BaseModel], prefix: str = "") -> frozenset[str]:
    """The dotted keys of `model` marked BOOKKEEPING, with those of the models nested in it
    (`eval.suites`, `dpo.micro_batch_size`): the one place a recipe kind's bookkeeping is read from."""
    out = set()
    for name, f in model.model_fields.items():
        if (f.json_schema_extra or {}).get("bookkeeping"):
            out.add(prefix + name)
        elif (sub := _nested_model(f.annotation)) is not None:
            out |= bookkeeping_keys(sub, f"{prefix}{name}.")
    return frozenset(out)


def _nested_model(annotation) -> type[BaseModel] | None:
    """`M`, `M | None` or `Optional[M]` for a pydantic model M; anything else (lists, dicts) is a leaf."""
    from typing import get_args

    for t in (annotation, *get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DeltaError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DeltaError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise DeltaError(f"{path}{at}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeltaError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
    return data


def validate(model: type[T], data: dict, source: str = "recipe", overrides: list[str] | None = None) -> T:
    """The recipe as `model`, or one DeltaError listing every problem, one line each:
    `source: key "a.b": message`. Nothing is loaded here: files are checked by `check_files`."""
    for item in overrides or []:
        _apply_override(data, item, source)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise DeltaError("\n".join(f'{source}: key "{k or "(top level)"}": {m}' for k, m in error_list(e))) from None


def error_list(e: ValidationError) -> list[tuple[str, str]]:
    """(dotted key, message) for every error, RecipeErrors expanded to their own keys."""
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RecipeErrors):
            out += [(".".join(x for x in (loc, k) if x), m) for k, m in cause.errors]
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error":
                msg = f"{msg}, got {err['input']!r}"
            out.append((loc, msg))
    return out


def check_files(cfg, source: str) -> None:
    """Files a recipe names that are missing (prompts, pairs data, local models), all at once, before
    any model loads. Recipe kinds list theirs in `problems()`."""
    problems = cfg.problems() if hasattr(cfg, "problems") else []
    if problems:
        raise DeltaError("\n".join(f'{source}: key "{k}": {m}' for k, m in problems))


def load_recipe(path: str | Path, model: type[T], overrides: list[str] | None = None) -> T:
    return validate(model, load_yaml(path), str(path), overrides)


def _apply_override(data: dict, item: str, source: str) -> None:
    """`a.b.c=value` with value parsed as YAML (so numbers, booleans and lists work)."""
    if "=" not in item:
        raise DeltaError(f"override {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise DeltaError(f"{source}: override {key!r}: {p!r} is not a mapping")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise DeltaError(f"{source}: override {key!r}: value is not valid YAML ({getattr(e, 'problem', None) or e})") from None
