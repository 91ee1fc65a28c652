import json
import math

import numpy as np
import pytest

from deltalearn.audit.judges import loglik_score, novel_mask
from deltalearn.studies.delta.study import DeltaStudy, Grid, expand_grid
from deltalearn.metrics.stats import paired_gain
from deltalearn.models.ladder import default_ladder


def test_grid_is_every_ordered_pair_or_only_bigger_chosen():
    ladder = default_ladder()
    both = expand_grid(Grid(), ladder)
    assert len(both) == 6 and {(c.chosen, c.rejected) for c in both} == {
        (a, b) for a in ladder.names for b in ladder.names if a != b}
    down = expand_grid(Grid(directions="bigger_chosen"), ladder)
    assert [(c.chosen, c.rejected) for c in down] == [
        ("smollm2-135m", "smollm2-135m-drop2"), ("smollm2-135m", "smollm2-135m-drop4"),
        ("smollm2-135m-drop2", "smollm2-135m-drop4")]
    assert len(expand_grid(Grid(tiers=["smollm2-135m", "smollm2-135m-drop4"]), ladder)) == 2


def test_paired_gain_averages_signed_metric_means():
    g = paired_gain({"a.x": [1.0, 0.0, 1.0, 0.0], "b.y": [-0.5, -0.5]}, {"a.x": 1.0, "b.y": -1.0}, n_boot=500)
    assert g["mean"] == pytest.approx((0.5 + 0.5) / 2)  # b.y is lower-is-better: -0.5 becomes +0.5
    lo, hi = g["ci95"]
    assert lo <= g["mean"] <= hi and lo < hi
    assert paired_gain({"a.x": [0.2, 0.2]}, {"a.x": 1.0})["ci95"] == pytest.approx((0.2, 0.2))
    assert math.isnan(paired_gain({"a.x": []}, {"a.x": 1.0})["mean"])


def test_loglik_score_charges_for_repeats():
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    assert novel_mask(ids, 2) == [True] * 8
    loop = [1, 2, 1, 2, 1, 2]
    assert novel_mask(loop, 2) == [True, True, True, False, False, False]
    logps = [-2.0, -2.0, -1.0, -0.1, -0.1, -0.1]
    assert loglik_score(logps, loop, 0) == pytest.approx(np.mean(logps))
    assert loglik_score(logps, loop, 2) == pytest.approx(-5.0 / 3 + math.log(0.5))
    assert loglik_score([], [], 4) is None


@pytest.mark.parametrize("bad, match", [
    ({"conditions": [{"name": "x", "method": "dpo_norm", "chosen": "smollm2-135m"}]}, "needs `rejected`"),
    ({"conditions": [{"name": "x", "method": "sft", "chosen": "nope"}]}, "unknown tier 'nope'"),
    ({}, "needs `conditions`, a `grid`"),
    ({"grid": {}, "eval": {"suites": ["mc_lite"], "gain": ["ifeval_lite.prompt_strict"]}}, "gain metric"),
    ({"conditions": [{"name": "base", "method": "sft", "chosen": "smollm2-135m"}]}, "not 'base'"),
])
def test_bad_recipes_are_refused_with_the_reason(bad, match):
    with pytest.raises(ValueError, match=match):
        DeltaStudy.model_validate(bad)


def test_delta_study_end_to_end_on_a_tiny_ladder(tmp_path, tiny_model_dir):
    from deltalearn.studies.delta.report import delta_report
    from deltalearn.studies.delta.study import run_delta

    tiny = str(tiny_model_dir)
    cfg = DeltaStudy.model_validate({
        "out_dir": str(tmp_path / "run"), "student": {"name": "t4", "model": tiny},
        "ladder": {"tiers": [{"name": "t4", "model": tiny}, {"name": "t3", "model": tiny, "degrade": {"drop_layers": [1]}},
                             {"name": "t2", "model": tiny, "degrade": {"drop_layers": [1, 2]}}]},
        "prompts": {"split": "train", "limit": 8},
        "generate": {"batch_size": 4, "settings": {"max_new_tokens": 12}},
        "conditions": [{"name": "sft_t3", "method": "sft", "chosen": "t3"}],
        "grid": {"tiers": ["t3", "t2"]},
        "audit": {"judge": "loglik"},
        "eval": {"suites": ["mc_lite", "ifeval_lite"], "limit": 3, "max_new_tokens": 6, "batch_size": 4,
                 "gain": ["mc_lite.acc_norm", "ifeval_lite.instruction_strict"]},
        "dpo": {"lr": 1e-3, "global_batch_size": 4, "max_length": 128},
        "sft": {"method": "sft", "lr": 1e-3, "global_batch_size": 4, "max_length": 128},
    })
    s = run_delta(cfg)
    run = tmp_path / "run"
    assert list(s["results"]) == ["sft_t3", "t3>t2", "t2>t3"]
    r = s["results"]
    assert r["sft_t3"]["pairs"] == 8 and "audit" not in r["sft_t3"]
    # the two directions of one tier pair are judged as exact opposites
    assert r["t3>t2"]["audit"]["mean_delta"] == pytest.approx(-r["t2>t3"]["audit"]["mean_delta"])
    rows = [json.loads(l) for l in (run / "pairs" / "t3_over_t2.jsonl").read_text().splitlines()]
    assert all(x["chosen_tier"] == "t3" and x["rejected_tier"] == "t2" and x["label_source"] == "study:t3>t2" for x in rows)
    for n in r:
        assert set(r[n]["metrics"]) == set(s["base"]) and not math.isnan(r[n]["gain"]["mean"])
    assert (run / "gain.png").stat().st_size > 1000 and (run / "gain_vs_delta.png").stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "| t3>t2 | dpo_norm | t3 > t2 |" in report and "## Every metric" in report
    # answer lengths: ifeval_lite generates (budget 6 tokens), mc_lite scores log-likelihoods only
    ev = [json.loads(l) for l in (run / "eval" / "base" / "ifeval_lite.jsonl").read_text().splitlines()]
    assert s["answers"]["student"] == {"ifeval_lite": {
        "tokens": pytest.approx(sum(x["n_tokens"] for x in ev) / 3),
        "at_limit": pytest.approx(sum(x["finish_reason"] == "length" for x in ev) / 3)}}
    assert set(s["answers"]) == {"student", *r} and all(0 < a["ifeval_lite"]["tokens"] <= 6 for a in s["answers"].values())
    assert set(r["sft_t3"]["pair_tokens"]) == {"chosen"} and set(r["t3>t2"]["pair_tokens"]) == {"chosen", "rejected"}
    assert r["t3>t2"]["pair_tokens"]["chosen"] == pytest.approx(sum(x["chosen_tokens"] for x in rows) / len(rows))
    assert "## Answer length" in report and "| student | " in report
    (run / "report.md").unlink()
    delta_report(run)
    assert (run / "report.md").read_text() == report
    # a second run reuses answers, trained models and evaluations: nothing is recomputed
    models = {p: p.stat().st_mtime_ns for p in (run / "models").rglob("model.safetensors")}
    s2 = run_delta(cfg)
    assert {p: p.stat().st_mtime_ns for p in (run / "models").rglob("model.safetensors")} == models
    assert s2["results"]["t3>t2"]["gain"] == s["results"]["t3>t2"]["gain"]
    assert all(g["generated"] == 0 for g in s2["generation"])


def test_stages_run_apart_give_the_same_results_as_one_run(tmp_path, tiny_model_dir):
    from deltalearn.errors import DeltaError
    from deltalearn.studies.delta.study import run_delta

    tiny = str(tiny_model_dir)
    spec = {
        "student": {"name": "t4", "model": tiny},
        "ladder": {"tiers": [{"name": "t4", "model": tiny}, {"name": "t2", "model": tiny, "degrade": {"drop_layers": [1, 2]}}]},
        "prompts": {"split": "train", "limit": 4}, "generate": {"batch_size": 4, "settings": {"max_new_tokens": 8}},
        "conditions": [{"name": "a", "chosen": "t4", "rejected": "t2"},
                       {"name": "b", "chosen": "t2", "rejected": "t4", "train": {"lr": 2e-3}}],
        "audit": None, "eval": {"suites": ["mc_lite"], "limit": 3, "gain": ["mc_lite.acc"]},
        "dpo": {"lr": 1e-3, "global_batch_size": 4, "max_length": 128},
    }
    one = run_delta(DeltaStudy.model_validate({**spec, "out_dir": str(tmp_path / "one")}))
    staged = DeltaStudy.model_validate({**spec, "out_dir": str(tmp_path / "staged")})
    with pytest.raises(DeltaError, match="run the data stage first"):
        run_delta(staged, stage="train")
    assert run_delta(staged, stage="data") is None
    with pytest.raises(DeltaError, match="'a' is not trained yet"):
        run_delta(staged, stage="eval")
    with pytest.raises(DeltaError, match="unknown condition 'c'"):
        run_delta(staged, stage="train", condition="c")
    with pytest.raises(DeltaError, match="unknown condition 'base'"):
        run_delta(staged, stage="train", condition="base")
    assert run_delta(staged, stage="eval", condition="base") is None  # the student alone, before any training
    assert (tmp_path / "staged" / "eval" / "base" / "mc_lite.jsonl").is_file()
    assert not (tmp_path / "staged" / "eval" / "a").exists()
    run_delta(staged, stage="train", condition="a")
    assert not (tmp_path / "staged" / "models" / "b").exists()
    with pytest.raises(DeltaError, match="nothing evaluated yet"):
        run_delta(staged, stage="report")
    assert run_delta(staged, stage="eval", condition="a") is None
    assert not (tmp_path / "staged" / "eval" / "b").exists()
    with pytest.raises(DeltaError, match="one train or eval stage"):
        run_delta(staged, stage="report", condition="a")
    part = run_delta(staged, stage="report")  # a partial report names what is missing; the study is not done
    assert part["missing"] == ["b"] and list(part["results"]) == ["a"]
    assert "not yet trained or evaluated: b" in (tmp_path / "staged" / "report.md").read_text()
    assert "answers to 4 shipped train prompts" in (tmp_path / "staged" / "report.md").read_text()
    assert "evaluated on mc_lite (3 items)." in (tmp_path / "staged" / "report.md").read_text()
    assert json.loads((tmp_path / "staged" / "record.json").read_text())["study"]["state"] == "started"
    from deltalearn.studies.delta.status import next_commands, study_status

    st = study_status(staged)
    assert [(r["name"], r["trained"], r["evaluated"]) for r in st["rows"]] == [("student", "-", 1), ("a", "yes", 1), ("b", "no", 0)]
    assert next_commands(st, "r.yaml", ["seed=1"]) == [f"deltalearn run r.yaml --set seed=1 --stage {s}" for s in (
        "train --condition b", "eval --condition b", "report")]
    # Another machine: only the archive (no weights) survives; it is restored and the study finished.
    import shutil

    from deltalearn.archive import archive

    kept = archive(tmp_path / "staged", tmp_path / "kept")
    assert kept["skipped"] and all(any(w in x["why"] for w in ("weights", "evaluation's cache", "saved dataset", "no report",
                                                               "study's pairs")) for x in kept["skipped"])
    assert any("weights" in x["why"] for x in kept["skipped"])
    pairs = {p.name: p.read_bytes() for p in (tmp_path / "staged" / "pairs").glob("*.jsonl")}
    assert sorted(pairs) == ["a.jsonl", "b.jsonl"] and not (tmp_path / "kept" / "pairs").exists()
    shutil.rmtree(tmp_path / "staged")
    archive(tmp_path / "kept", tmp_path / "staged")
    with pytest.raises(DeltaError, match=r"a\.jsonl: not here .* --stage data"):
        run_delta(staged, stage="train")  # the pairs were left out of the archive, and are named before any work
    assert next_commands(study_status(staged), "r.yaml", None)[0] == "deltalearn run r.yaml --stage data"
    assert run_delta(staged, stage="data") is None  # rebuilt from the archived answers, byte for byte
    assert {p.name: p.read_bytes() for p in (tmp_path / "staged" / "pairs").glob("*.jsonl")} == pairs
    changed = DeltaStudy.model_validate({**spec, "out_dir": str(tmp_path / "staged"), "conditions": [
        {**spec["conditions"][0], "train": {"lr": 5e-4}}, spec["conditions"][1]]})
    with pytest.raises(DeltaError, match="'a': its weights .* are gone"):
        run_delta(changed, stage="eval", condition="a")  # its kept evaluation is of other settings
    run_delta(staged, stage="train")  # trains b; a is trained and evaluated, its weights were not kept
    assert not (tmp_path / "staged" / "models" / "a" / "final").exists()
    two = run_delta(staged, stage="eval")
    assert two["missing"] == []
    st = study_status(staged)
    assert st["report"] and next_commands(st, "r.yaml", None) == []
    assert st["rows"][1]["trained"] == "yes (weights not kept)" and st["rows"][2]["trained"] == "yes"
    # the seconds survive the restore: a's come from the archived summaries of the first machine
    a_eval = json.loads((tmp_path / "staged" / "eval" / "a" / "summary.json").read_text())["suites"]
    assert st["rows"][1]["eval_s"] == pytest.approx(sum(v["seconds"] for v in a_eval.values()))
    assert st["rows"][1]["train_s"] == json.loads((tmp_path / "staged" / "models" / "a" / "summary.json").read_text())["seconds"] > 0
    for n in ("a", "b"):
        assert two["results"][n]["metrics"] == one["results"][n]["metrics"]
    import yaml

    assert yaml.safe_load((tmp_path / "one" / "models" / "b" / "config.yaml").read_text())["lr"] == 2e-3
    assert yaml.safe_load((tmp_path / "one" / "models" / "a" / "config.yaml").read_text())["lr"] == 1e-3


def test_the_gpu_recipes_validate_and_plan(capsys):
    from importlib import resources

    import yaml

    from deltalearn.studies.delta.plan import plan_study

    names = ["tulu3_qwen3b_over_1.5b.yaml", "tulu3_weak_pairs.yaml", "tulu3_qwen_grid.yaml"]
    plans = {}
    for name in names:
        data = yaml.safe_load(resources.files("deltalearn").joinpath("recipes", name).read_text())
        plans[name] = plan_study(DeltaStudy.model_validate(data), f"recipes/{name}")
    head = plans["tulu3_qwen3b_over_1.5b.yaml"]
    train = [r for r in head["rows"] if r["stage"] == "train"]
    assert len(train) == 1 and train[0]["pairs"] == 150_000
    # 8 FLOPs per parameter per token (policy forward+backward, reference forward), chosen and rejected
    assert train[0]["flops"] == pytest.approx(8 * 8_030_261_248 * 150_000 * 700 * 2)
    assert train[0]["gpu_hours"] == pytest.approx(train[0]["flops"] / (989e12 * 0.35 * 3600))
    cmds = head["commands"]
    assert cmds[0].endswith("--stage data") and cmds[1].startswith(
        "accelerate launch --config_file configs/accelerate/zero1.yaml --num_processes 8 -m deltalearn.cli run")
    assert any(c.startswith("olmes --model runs/tulu3-8b-qwen3b-over-1.5b/models/dpo_qwen3b_over_1.5b/final") for c in cmds)
    grid = plans["tulu3_qwen_grid.yaml"]
    assert sum(r["stage"] == "train" for r in grid["rows"]) == 21
    weak = [r for r in plans["tulu3_weak_pairs.yaml"]["rows"] if r["stage"] == "train"]
    assert [r["what"] for r in weak] == ["dpo_qwen3b_over_1.5b", "dpo_qwen1.5b_over_0.5b", "dpo_llama3b_over_1b"]
    data = yaml.safe_load(resources.files("deltalearn").joinpath("recipes", names[0]).read_text())
    data["seed"] = 7  # as --set seed=7 would
    sets = plan_study(DeltaStudy.model_validate(data), f"recipes/{names[0]}", ["seed=7", "dpo.lr=1e-7"])["commands"]
    runs = [c for c in sets if " run " in c]
    assert len(runs) == 3 and all("--set seed=7 --set dpo.lr=1e-7" in c for c in runs)


def test_grid_plot_labels_drop_the_common_tier_prefix():
    from deltalearn.studies.delta.report import short_labels

    res = {"qwen2.5-72b>qwen2.5-32b": {"chosen": "qwen2.5-72b", "rejected": "qwen2.5-32b"},
           "sft_a": {"chosen": "qwen2.5-7b", "rejected": None}}
    assert short_labels(res) == {"qwen2.5-72b>qwen2.5-32b": "72b>32b", "sft_a": "sft_a"}
    res = {"m>m-drop2": {"chosen": "m", "rejected": "m-drop2"}}
    assert short_labels(res) == {"m>m-drop2": "full>drop2"}


def test_every_shipped_delta_recipe_validates_and_names_gain_metrics_its_suites_report():
    from importlib import resources

    import yaml

    from deltalearn.evaluate.suites import get_suite

    shipped = [f for f in resources.files("deltalearn").joinpath("recipes").iterdir() if f.name.endswith(".yaml")]
    delta = [yaml.safe_load(f.read_text()) for f in shipped]
    delta = [d for d in delta if d.get("kind") == "delta"]
    assert len(delta) >= 7
    for data in delta:
        study = DeltaStudy.model_validate(data)
        for g in study.eval.gain:
            suite, metric = g.split(".", 1)
            assert metric in get_suite(suite).better, (data["name"], g)
