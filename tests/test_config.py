import pytest

from deltalearn.config import load_recipe
from deltalearn.pairs.recipe import PairsRecipe
from deltalearn.errors import DeltaError


def test_recipe_errors_name_file_and_key(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("generate:\n  batch_size: 0\n")
    with pytest.raises(DeltaError, match=r'r.yaml: key "generate.batch_size": Input should be greater than or equal to 1'):
        load_recipe(p, PairsRecipe)
    p.write_text("pairs:\n  strategy: biggest\n")
    with pytest.raises(DeltaError, match=r'key "pairs.strategy"'):
        load_recipe(p, PairsRecipe)
    p.write_text("ladder:\n  tiers:\n    - {name: a}\n    - {name: a}\n")
    with pytest.raises(DeltaError, match=r'key "ladder.tiers".*repeated'):
        load_recipe(p, PairsRecipe)
    p.write_text("generate: [unclosed\n")
    with pytest.raises(DeltaError, match=r"r.yaml line \d+: invalid YAML"):
        load_recipe(p, PairsRecipe)
    p.write_text("genrate: {}\n")
    with pytest.raises(DeltaError, match=r'key "genrate": Extra inputs are not permitted'):
        load_recipe(p, PairsRecipe)
    with pytest.raises(DeltaError, match="recipe file not found"):
        load_recipe(tmp_path / "none.yaml", PairsRecipe)


def test_overrides_and_defaults(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("ladder: default\n")
    r = load_recipe(p, PairsRecipe, ["generate.settings.max_new_tokens=12", "pairs.filters.drop_truncated=false"])
    assert r.generate.settings.max_new_tokens == 12
    assert r.pairs.filters.drop_truncated is False
    assert r.generate.settings.temperature == 0.0  # greedy by default, as in the paper
    assert [t.name for t in r.ladder.tiers] == ["smollm2-135m", "smollm2-135m-drop2", "smollm2-135m-drop4"]


def test_every_shipped_recipe_validates():
    from importlib import resources

    import yaml

    from deltalearn.config import validate
    from deltalearn.studies.bold.study import BoldStudy
    from deltalearn.studies.delta.study import DeltaStudy
    from deltalearn.studies.logreg.study import LogRegStudy
    from deltalearn.train.config import TrainConfig

    kinds = {"pairs": PairsRecipe, "train": TrainConfig, "bold": BoldStudy, "logreg": LogRegStudy, "delta": DeltaStudy}
    folder = resources.files("deltalearn").joinpath("recipes")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert {"cpu_pairs.yaml", "cpu_train.yaml", "paper_train.yaml", "bold.yaml", "bold_demo.yaml", "weak_vs_weaker.yaml",
            "self_vs_smaller.yaml", "ladder_grid.yaml", "tulu3_qwen3b_over_1.5b.yaml", "tulu3_weak_pairs.yaml",
            "tulu3_qwen_grid.yaml"} <= set(names)
    for name in names:
        data = yaml.safe_load(folder.joinpath(name).read_text())
        validate(kinds[data["kind"]], data, name)


def test_presets_fill_what_the_recipe_leaves_out():
    from deltalearn.train.config import TrainConfig

    paper = TrainConfig.model_validate({"preset": "paper", "data": "x"})
    assert (paper.method, paper.beta, paper.lr, paper.global_batch_size, paper.max_length) == ("dpo_norm", 5.0, 5e-8, 32, 2048)
    assert (paper.warmup_ratio, paper.min_lr_ratio, paper.adam_betas, paper.max_grad_norm, paper.seed) == (0.03, 0.1, (0.9, 0.95), 1.0, 42)
    mine = TrainConfig.model_validate({"preset": "paper", "data": "x", "lr": 1e-7})
    assert mine.lr == 1e-7 and mine.beta == 5.0
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        TrainConfig.model_validate({"data": "x", "global_batch_size": 6, "micro_batch_size": 4})
