"""Every key of a recipe kind as a Markdown table (key | type | default | description), read from the
recipe models' own field descriptions: what `deltalearn recipe explain KIND` prints and the docs' key
tables show. Nested blocks are flattened to dotted keys (`generate.batch_size`); a list of blocks
shows its entries' keys as `key[].sub` (`ladder.tiers[].name`).

A nested key's default is its block's own: it applies to a key left out of a block the recipe
writes. Where a block itself is left out, the default on the block's row applies: the keys whose
value there differs from theirs (`{}` = none differ). Nothing here imports torch.
"""

from __future__ import annotations

import json
import types
import typing

from pydantic import BaseModel

from .errors import DeltaError


def kinds() -> list[str]:
    """The recipe kinds, as the `kind:` key of a recipe takes them."""
    from .recipes import kinds as table

    return list(table())


def explain(kind: str) -> str:
    """A Markdown table of every key of the recipe kind `kind`."""
    from .recipes import kinds as table

    models = table()
    if kind not in models:
        raise DeltaError(f"unknown recipe kind {kind!r} (kinds: {', '.join(models)})")
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in _rows(models[kind])]
    return "\n".join(lines)


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of each field of `model`, nested models' fields after their own."""
    out = []
    for name, f in model.model_fields.items():
        key = prefix + name
        default = "required" if f.is_required() else _show(f.get_default(call_default_factory=True))
        out.append((key, _type(f.annotation), default, f.description or ""))
        nested = _nested(f.annotation)
        if nested is not None:
            sub, many = nested
            out += _rows(sub, f"{key}[]." if many else f"{key}.")
    return out


def _nested(t) -> tuple[type[BaseModel], bool] | None:
    """The model a field holds, and whether it holds a list of them; None for any other value."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is None:
        return (t, False) if isinstance(t, type) and issubclass(t, BaseModel) else None
    if origin is typing.Annotated:
        return _nested(args[0])
    if origin in (typing.Union, types.UnionType):
        return next((n for n in map(_nested, args) if n is not None), None)
    if origin is list and args:
        inner = _nested(args[0])
        return (inner[0], True) if inner is not None else None
    return None


def _type(t) -> str:
    """A type as a recipe writer reads it: `int | None`, `"refuse" | "rerun"`, `list[str]`."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type(a) for a in args)}]"
    return "None" if t is type(None) else getattr(t, "__name__", str(t))


def _show(value) -> str:
    """A default as YAML flow syntax (JSON); a block as the keys where it differs from the block's defaults."""
    return json.dumps(_differences(value), default=str)


def _differences(value):
    if isinstance(value, (list, tuple)):
        return [_differences(v) for v in value]
    if not isinstance(value, BaseModel):
        return value
    out = {}
    for name, f in type(value).model_fields.items():
        v = getattr(value, name)
        if f.is_required() or v != f.get_default(call_default_factory=True):
            out[name] = _differences(v)
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
