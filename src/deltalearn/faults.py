"""Fault injection for the kill-point tests: SIGKILL this very process at a named point.

`DELTALEARN_KILL_AT=name:n` kills the process the n-th time execution reaches `point(name)` (n = 1 when
left out). Unset, every point is one dictionary lookup and nothing else. The points sit where a real
crash would hurt most: inside atomic writes before their rename, between an append and its record,
between a checkpoint and its `latest` pointer, mid-line in a JSONL append.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("DELTALEARN_KILL_AT")
_NAME, _, _N = (_SPEC or "").partition(":")
_seen: dict[str, int] = {}


def hit(name: str) -> bool:
    """True exactly when this is the moment to die (callers that must half-finish something first)."""
    if name != _NAME:
        return False
    _seen[name] = _seen.get(name, 0) + 1
    return _seen[name] == int(_N or 1)


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def point(name: str) -> None:
    if _SPEC is not None and hit(name):
        kill()
