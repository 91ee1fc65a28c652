"""The run-directory record: which inputs produced a piece of finished work, decided in one place.

Every stage that reuses finished work (a training run, a suite's evaluation, an audit, a study's run
directory) keeps an entry in `record.json` beside its outputs: the fingerprints of its inputs (content
hashes of files, the weights' fingerprint, the settings that change the result) and its state,
`started` or `done`. Work is reused (or resumed) only when the recorded inputs equal the new ones
exactly. Anything else is refused with one line that names each differing key and both values, or,
when the recipe says `on_change: rerun`, the old work is cleared and done again. Settings that only
change how work is run or logged (bookkeeping: micro-batch split, progress, paths) are left out of
the inputs by the caller, so they never block a reuse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal

from .errors import DeltaError
from .io import write_json_atomic

from .rundir import RECORD  # noqa: F401  (spelled with the rest of the layout)
OnChange = Literal["refuse", "rerun"]
State = Literal["new", "started", "done"]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`dpo.lr`); lists and scalars are leaves."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def differences(old: dict, new: dict, defaults: dict | None = None,
                ignore: Callable[[str], bool] | None = None) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every dotted key whose value differs; a missing key is None.
    A key missing from `old` whose new value is its entry in `defaults` is no difference: a setting
    added since the old record was written, which that work had at its default. Keys `ignore` names
    are bookkeeping now, though an older record may hold them."""
    a, b = flatten(_jsonable(old)), flatten(_jsonable(new))
    d = flatten(_jsonable(defaults or {}))
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not (k not in a and k in d and d[k] == b.get(k)) and not (ignore and ignore(k))]


def describe(diffs: list[tuple[str, Any, Any]], limit: int = 4) -> str:
    """`train_limit 48 -> 24, dpo.lr 5e-05 -> 2e-05 (+2 more)`"""
    shown = ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, a, b in diffs[:limit])
    return shown + (f" (+{len(diffs) - limit} more)" if len(diffs) > limit else "")


def _short(v: Any, width: int = 40) -> str:
    text = "unset" if v is None else json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, str, bool)) else str(v)
    if isinstance(v, str) and len(v) <= width and " " not in v:
        text = v
    return text if len(text) <= width else text[: width - 3] + "..."


def _jsonable(obj: Any) -> Any:
    """What the record file will hold (tuples become lists), so fresh and re-read inputs compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def read(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise DeltaError(f"{path}: damaged record (not JSON); delete the run directory to redo it") from None


def check(run_dir: str | Path, entry: str, inputs: dict, on_change: OnChange = "refuse", *,
          clear: Callable[[], None] | None = None, legacy: bool = False, what: str | None = None,
          defaults: dict | None = None, ignore: Callable[[str], bool] | None = None,
          resumable: Callable[[], bool] | None = None) -> State:
    """The state of `entry` in `run_dir` for these inputs: `new` (nothing to reuse), `started` (resume)
    or `done` (reuse). Different recorded inputs raise, or with `rerun` call `clear()` and return `new`.
    `legacy`: the caller found finished work of this entry with no record (an older version made it):
    its inputs are unknown, so it is treated as different. `resumable`: whether a `started` entry left
    anything a resume would use; a claim that left nothing (a start that failed on bad input) protects
    nothing, so other inputs replace it instead of being refused."""
    run_dir = Path(run_dir)
    rec = read(run_dir).get(entry)
    what = what or entry
    if rec is None and not legacy:
        return "new"
    diffs = differences(rec["inputs"], inputs, defaults, ignore) if rec is not None else None
    if diffs == []:
        return rec["state"]
    if rec is not None and rec["state"] == "started" and resumable is not None and not resumable():
        forget(run_dir, entry)
        return "new"
    if on_change == "refuse":
        why = describe(diffs) if diffs else "no record of its inputs (made by an older version)"
        raise DeltaError(f"{run_dir}: holds {what} made with other inputs ({why}); use another out_dir, "
                         "or --rerun (the recipe key on_change: rerun) to redo it")
    if clear is not None:
        clear()
    forget(run_dir, entry)
    return "new"


def mark(run_dir: str | Path, entry: str, inputs: dict, state: Literal["started", "done"]) -> None:
    """Record `entry`'s inputs with its state (atomically: a kill leaves the old record or the new one)."""
    run_dir = Path(run_dir)
    rec = read(run_dir)
    rec[entry] = {"inputs": _jsonable(inputs), "state": state}
    write_json_atomic(run_dir / RECORD, rec)


def forget(run_dir: str | Path, entry: str) -> None:
    rec = read(run_dir)
    if entry in rec:
        del rec[entry]
        write_json_atomic(Path(run_dir) / RECORD, rec)
