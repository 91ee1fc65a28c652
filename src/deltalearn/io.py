"""The one place that writes files: atomic replaces, crash-safe JSONL appends, manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import faults
from .errors import DeltaError, where


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    A crash before the rename leaves the previous file (or nothing) in place, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _fsync_file(tmp)
        faults.point("atomic_path.before_rename")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it takes `path`'s place in one rename.

    Readers see the old directory or the complete new one; a crash leaves no half-written directory
    under the final name (checkpoints, converted models, saved datasets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        faults.point("atomic_dir.before_rename")
        if path.exists():
            shutil.rmtree(path)
            faults.point("atomic_dir.old_removed")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(directory: str | os.PathLike) -> list[str]:
    """Delete what a killed atomic write left in `directory`: hidden `.NAME.XXXX.tmp` files and
    `.NAME.XXXX` / `.NAME.partial` directories. Call it only from the directory's one owner (a run
    starting or resuming), never while another process may be writing there."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if not p.name.startswith(".") or p.name in (".", ".."):
            continue
        if p.is_file() and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
        elif p.is_dir() and p.name.count(".") >= 2:  # .step-0000004.k3j2x, .final.abc12, .step-0000004.partial
            shutil.rmtree(p, ignore_errors=True)
        else:
            continue
        removed.append(p.name)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows and fsync, so a kill after this returns loses none of them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not data:
        return
    with open(path, "a", encoding="utf-8") as f:
        if faults.hit("append.torn"):  # a crash mid-write: half a line reaches the disk
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            faults.kill()
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def truncate_torn_tail(path: str | os.PathLike) -> int:
    """Cut a last line left unterminated by a crash mid-append; return the bytes removed.

    Without this, the next append would glue a good row onto the torn one.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        data = f.seek(0) or f.read()
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        return len(data) - keep


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> list[dict]:
    """Read JSONL; errors name the file and line.

    With `tolerate_torn_tail`, a last line cut short by a crash mid-append is ignored instead of
    failing: that is the only damage an append-only cache can take.
    """
    path = Path(path)
    if not path.exists():
        raise DeltaError(f"{path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DeltaError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if tolerate_torn_tail and i == len(lines):
                break
            raise DeltaError(f"{where(path, i)}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DeltaError(f"{where(path, i)}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def fingerprint(obj: Any, n: int = 16) -> str:
    """A short stable hash of a JSON-able object (configs, settings, datasets)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


ADAPTER_CONFIG = "adapter_config.json"  # peft's file: a LoRA adapter and the base it was trained on


def has_weights(path: str | os.PathLike) -> bool:
    """A saved model directory: full weights (config.json) or a LoRA adapter over a recorded base."""
    return (Path(path) / "config.json").is_file() or (Path(path) / ADAPTER_CONFIG).is_file()


def cache_dir() -> Path:
    """Where converted models, reference log-probs, the matmul peak and content hashes are kept."""
    root = os.environ.get("DELTALEARN_CACHE") or Path.home() / ".cache" / "deltalearn"
    return Path(root)


def file_fingerprint(path: str | os.PathLike, n: int = 16) -> str:
    """sha256 of the file's whole content. Memoised by (path, size, mtime, inode) so a multi-GB
    weights file is read once, not at every check; any rewrite of the file changes the stat key."""
    path = Path(path)
    st = path.stat()
    memo_key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    memo = _read_memo()
    if memo_key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        memo = _read_memo()  # another process may have added entries meanwhile
        memo[memo_key] = h.hexdigest()
        with contextlib.suppress(OSError):
            write_json_atomic(_memo_path(), memo)
    return memo[memo_key][:n]


def _memo_path() -> Path:
    return cache_dir() / "sha256.json"


def _read_memo() -> dict:
    try:
        return json.loads(_memo_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
