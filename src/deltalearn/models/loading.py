"""Turn a TierSpec into (model, tokenizer): HF directory, hub id, GGUF file or the embedded model.

GGUF files are dequantised to float32 once (about 20 s for the embedded model) and cached as a
safetensors directory, so later loads take about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeltaError
from ..io import ADAPTER_CONFIG, atomic_dir, cache_dir, file_fingerprint, fingerprint
from .degrade import apply_degradation
from .embedded import embedded_gguf
from .spec import EMBEDDED, TierSpec


@dataclass
class LoadedModel:
    spec: TierSpec
    model: Any
    tokenizer: Any
    size: int  # parameter count (declared or counted)
    fingerprint: str  # identifies the weights: source fingerprint + degradation

    @property
    def name(self) -> str:
        return self.spec.name


def quick_file_fingerprint(path: Path, sample: int = 4 << 20) -> str:
    """Hash of size + first and last `sample` bytes: fast on multi-GB files, stable across copies."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(sample))
        if size > 2 * sample:
            f.seek(-sample, os.SEEK_END)
            h.update(f.read(sample))
    return h.hexdigest()[:16]


def dir_fingerprint(path: Path) -> str:
    """Content hash of a model directory's weights, configs and tokenizer files (whole files, memoised)."""
    parts = []
    for name in sorted(os.listdir(path)):
        p = path / name
        if p.is_file() and (name.endswith((".safetensors", ".bin", ".json", ".model", ".txt", ".jinja"))):
            parts.append((name, file_fingerprint(p)))
    return fingerprint(parts)


def adapter_base(path: Path) -> Path:
    """The base model directory a LoRA adapter was trained on (peft records it in adapter_config.json)."""
    base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or ""
    if not (Path(base) / "config.json").is_file():
        raise DeltaError(f"{path}: LoRA adapter over {base!r}, which is not a local model directory; "
                         "evaluate it where it was trained, or merge it there")
    return Path(base)


def resolve_source(spec: TierSpec) -> tuple[str, str | None, str]:
    """Return (kind, gguf path or None, location) with kind in {gguf, dir, adapter, hub}."""
    if spec.model == EMBEDDED or spec.model == "embedded":
        return "gguf", str(embedded_gguf()), EMBEDDED
    if spec.model.startswith("models:"):  # an opt-in model set (models/modelsets.py)
        from .modelsets import installed_path

        path = installed_path(spec.model.removeprefix("models:"))
        return "gguf", str(path), str(path)
    path = Path(spec.model).expanduser()
    if spec.gguf_file:
        gguf = path / spec.gguf_file if path.is_dir() else Path(spec.gguf_file)
        if not gguf.is_file():
            raise DeltaError(f"model {spec.name!r}: GGUF file not found: {gguf}")
        return "gguf", str(gguf), str(gguf)
    if spec.model.endswith(".gguf"):
        if not path.is_file():
            raise DeltaError(f"model {spec.name!r}: GGUF file not found: {path}")
        return "gguf", str(path), str(path)
    if path.is_dir():
        if (path / ADAPTER_CONFIG).is_file():
            return "adapter", None, str(path)
        if not (path / "config.json").is_file():
            raise DeltaError(f"model {spec.name!r}: {path} is a directory without config.json (not an HF model)")
        return "dir", None, str(path)
    if path.exists() or spec.model.startswith((".", "/", "~")) or spec.model.count("/") > 1:
        raise DeltaError(f"model {spec.name!r}: path not found or not a model: {spec.model}")
    return "hub", None, spec.model


def source_problems(spec: TierSpec) -> list[str]:
    """Why this tier's model cannot be found locally (missing file or directory), without
    loading it; a hub id is not checked (it may be reachable where the recipe runs)."""
    try:
        resolve_source(spec)
    except DeltaError as e:
        return [str(e)]
    return []


def gguf_architecture(path: str) -> str:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception as e:  # a file that is not GGUF at all
        raise DeltaError(f"{path}: not a readable GGUF file ({e.__class__.__name__}: {e})") from None


def convert_gguf(path: str) -> Path:
    """Dequantise a GGUF file to float32 safetensors in the cache; return the directory."""
    src = Path(path)
    target = cache_dir() / "models" / f"{src.stem}-{quick_file_fingerprint(src)}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    arch = gguf_architecture(path)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as e:
        raise DeltaError(
            f"{path}: GGUF architecture {arch!r} is not supported by this transformers version ({str(e)[:120]})"
        ) from None
    # save_pretrained refuses a model still marked as GGUF-quantised, but the weights are float32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "deltalearn_source.json").write_text(json.dumps({"gguf": str(src), "architecture": arch}))
    return target


def tier_fingerprint(spec: TierSpec) -> str:
    """Identify a tier's weights without loading them (cache keys are checked before any load)."""
    kind, gguf, location = resolve_source(spec)
    if kind == "gguf":
        source = ["gguf", file_fingerprint(Path(gguf))]
    elif kind == "dir":
        source = ["dir", dir_fingerprint(Path(location))]
    elif kind == "adapter":
        source = ["adapter", dir_fingerprint(Path(location)), dir_fingerprint(adapter_base(Path(location)))]
    else:
        source = ["hub", location, spec.revision]
    return fingerprint([source, spec.identity()["degrade"]])


def load_model(spec: TierSpec, *, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, gguf, location = resolve_source(spec)
    torch_dtype = getattr(torch, dtype)
    common = {"trust_remote_code": spec.trust_remote_code}
    if kind == "gguf":
        model_path, kwargs = str(convert_gguf(gguf)), {}
    elif kind == "dir":
        model_path, kwargs = location, {}
    elif kind == "adapter":  # the base's weights, the adapter's tokenizer (training saves both)
        model_path, kwargs = str(adapter_base(Path(location))), {}
    else:
        model_path, kwargs = location, {"revision": spec.revision}
    from safetensors import SafetensorError

    try:
        tokenizer = AutoTokenizer.from_pretrained(location if kind == "adapter" else model_path, **kwargs, **common,
                                                  **_hub_flags(kind))
        model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch_dtype, **kwargs, **common, **_hub_flags(kind)
        )
        if kind == "adapter":  # merged: generation and scoring then run at the base model's speed
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, location).merge_and_unload()
    except SafetensorError as e:  # a truncated or corrupted weights file
        raise DeltaError(f"model {spec.name!r}: damaged weights in {model_path} ({str(e).splitlines()[0][:120]}); "
                         "re-create or re-download it") from None
    except OSError as e:
        if kind == "hub":
            raise DeltaError(
                f"model {spec.name!r}: {location!r} is not a local directory or .gguf file, and the hub "
                f"could not provide it (offline or unknown id): {str(e).splitlines()[0][:160]}"
            ) from None
        raise DeltaError(f"model {spec.name!r}: cannot load {location}: {str(e).splitlines()[0][:160]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.degrade is not None:
        apply_degradation(model, spec.degrade, name=spec.name)
    model.to(device).eval()
    size = spec.size or model.num_parameters()
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, size=int(size), fingerprint=tier_fingerprint(spec))


def _hub_flags(kind: str) -> dict:
    if kind != "hub":
        return {}
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    return {"local_files_only": True} if offline else {}


def materialise(spec: TierSpec) -> str:
    """A directory (or hub id) an external engine such as vLLM can load: derived tiers and LoRA
    adapters (merged into their base) are saved once."""
    kind, gguf, location = resolve_source(spec)
    if spec.degrade is None and kind != "adapter":
        return str(convert_gguf(gguf)) if kind == "gguf" else location
    target = cache_dir() / "models" / f"derived-{spec.name}-{tier_fingerprint(spec)}"
    if not (target / "config.json").is_file():
        loaded = load_model(spec)
        with atomic_dir(target) as tmp:
            loaded.model.save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
    return str(target)
