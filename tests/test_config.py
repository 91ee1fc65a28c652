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


def test_one_training_schema_derived_from_trainconfig():
    """Study stages and condition overrides are TrainConfig's own fields made optional; presets state
    only what differs from its defaults; bookkeeping is one mark on the fields, read by one function."""
    from deltalearn.config import bookkeeping_keys
    from deltalearn.studies.bold.study import BoldStudy
    from deltalearn.studies.common import STAGE_KEYS, Stage, TrainOverrides
    from deltalearn.studies.delta.study import DeltaStudy
    from deltalearn.train.config import BOOKKEEPING_KEYS, PRESETS, TrainConfig, preset_value

    fields = TrainConfig.model_fields
    for k in STAGE_KEYS:
        assert Stage.model_fields[k].description.startswith(fields[k].description)
        assert Stage(preset="paper").model_dump()[k] == preset_value("paper", k)
    assert set(TrainOverrides.model_fields) < set(fields) and "beta" in TrainOverrides.model_fields
    for name, preset in PRESETS.items():
        same = [k for k, v in preset.items() if v == fields[k].default]
        assert not same, f"preset {name} restates defaults: {same}"
    assert "micro_batch_size" in BOOKKEEPING_KEYS and "beta" not in BOOKKEEPING_KEYS
    assert bookkeeping_keys(DeltaStudy) == {
        "name", "description", "out_dir", "answers_dir", "conditions", "grid", "plan", "on_change", "eval.suites",
        "eval.gain", "eval.batch_size", "generate.batch_size", "dpo.micro_batch_size", "sft.micro_batch_size"}
    assert bookkeeping_keys(BoldStudy) >= {"name", "out_dir", "batch_size", "conditions", "on_change", "warmup.micro_batch_size"}


def test_a_condition_overrides_any_train_key_and_errors_name_it():
    import pytest

    from deltalearn.config import validate
    from deltalearn.errors import DeltaError
    from deltalearn.studies.delta.study import DeltaStudy

    def study(train):
        return {"kind": "delta", "conditions": [{"name": "c", "chosen": "smollm2-135m", "rejected": "smollm2-135m-drop2",
                                                 "train": train}]}

    cfg = validate(DeltaStudy, study({"nll_coef": 1.0, "dtype": "bfloat16", "lr": None}), "r.yaml")
    stage = cfg.stage_for(cfg.conditions[0])
    assert (stage.nll_coef, stage.lr, stage.options) == (1.0, cfg.dpo.lr, {"dtype": "bfloat16"})
    assert cfg.conditions[0].model_dump()["train"] == {"nll_coef": 1.0, "dtype": "bfloat16", "lr": None}
    for train, key in (({"lr": -1}, "conditions.0.train.lr"), ({"foo": 1}, "conditions.0.train.foo"),
                       ({"method": "sft"}, "conditions.0.train.method"), ({"micro_batch_size": 3}, "conditions.0.train")):
        with pytest.raises(DeltaError) as e:
            validate(DeltaStudy, study(train), "r.yaml")
        assert f'r.yaml: key "{key}":' in str(e.value), str(e.value)
