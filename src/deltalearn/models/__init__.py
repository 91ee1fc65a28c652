"""Model specs, loading (HF dirs, hub ids, GGUF files), derived weaker tiers and ladders.

The names below load on first use, so that `models.modelsets` (read by the CLI's help) and
`models.spec` import without torch."""

from importlib import import_module

_WHERE = {"EMBEDDED": "spec", "Degradation": "spec", "TierSpec": "spec", "LoadedModel": "loading",
          "load_model": "loading", "Ladder": "ladder", "default_ladder": "ladder"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
