"""Every recipe kind, by its `kind:` key: one table that `deltalearn run/train/pairs` and the tests read."""

from __future__ import annotations

from pathlib import Path

from .config import check_files, load_yaml, validate
from .errors import DeltaError


def kinds() -> dict:
    """Each recipe kind's schema: pairs and train, then every study plugin's (studies/)."""
    from .pairs.recipe import PairsRecipe
    from .studies import registry
    from .train.config import TrainConfig

    return {"pairs": PairsRecipe, "train": TrainConfig, **{k: s.part("schema") for k, s in registry().items()}}


def load_any(path: str | Path | None, overrides: list[str] | None = None, *, allowed: tuple[str, ...] | None = None,
             data: dict | None = None, default_kind: str | None = None, files: bool = True):
    """Validate a recipe of any kind (or of `allowed` kinds): every key, value, method, judge, suite and
    gain metric, all errors at once; then (with `files`) the files it names. Nothing is loaded."""
    source = str(path) if path is not None else "recipe"
    data = load_yaml(path) if data is None else data
    table = kinds()
    kind = data.get("kind", default_kind)
    ok = allowed or tuple(table)
    if kind not in ok:
        raise DeltaError(f'{source}: key "kind": {kind!r} is not a recipe kind here (expected one of: {", ".join(ok)})')
    cfg = validate(table[kind], data, source, overrides)
    if files:
        check_files(cfg, source)
    return cfg
