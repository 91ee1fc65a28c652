"""Pooling a delta study's seeds, on hand-made run directories (no model is loaded)."""

import json

import numpy as np
import pytest

from deltalearn.errors import DeltaError
from deltalearn.studies.delta.pool import pool_delta, pool_report, reversed_pairs
from deltalearn.studies.delta.study import DeltaStudy
from deltalearn.metrics.stats import spearman

SPEC = {"student": {"name": "s", "model": "embedded:smollm2-135m-instruct"},
        "ladder": {"tiers": [{"name": "big", "model": "x"}, {"name": "small", "model": "y"}]},
        "grid": {"directions": "both"}, "eval": {"suites": ["mbpp", "humaneval"], "gain": ["mbpp.pass@1", "humaneval.pass@1"]}}


def _write_eval(d, mbpp, he):
    d.mkdir(parents=True)
    for suite, vals in (("mbpp", mbpp), ("humaneval", he)):
        (d / f"{suite}.jsonl").write_text("".join(json.dumps({"id": f"{suite}-{i}", "pass@1": v}) + "\n" for i, v in enumerate(vals)))
    (d / "summary.json").write_text(json.dumps({"suites": {s: {"metrics": {"pass@1": {"mean": 0, "better": "higher"}}}
                                                           for s in ("mbpp", "humaneval")}}))


def _seed_dir(root, seed, models, delta=2.0, **override):
    cfg = DeltaStudy.model_validate({**SPEC, "seed": seed, "out_dir": str(root), **override}).model_dump(mode="json")
    results = {"big>small": {"chosen": "big", "rejected": "small", "audit": {"mean_delta": delta}},
               "small>big": {"chosen": "small", "rejected": "big", "audit": {"mean_delta": -delta}}}
    (root).mkdir(parents=True)
    (root / "results.json").write_text(json.dumps({"study": "delta", "name": "g", "config": cfg, "results": results}))
    for name, (mbpp, he) in models.items():
        _write_eval(root / "eval" / name, mbpp, he)
    return root


def test_seeds_pool_item_by_item_and_reversed_pairs_compare(tmp_path):
    base = ([0, 0, 1, 1], [0, 1])
    a = _seed_dir(tmp_path / "s42", 42, {"base": base, "big_over_small": ([1, 1, 1, 1], [1, 1]), "small_over_big": ([0, 0, 0, 1], [0, 1])})
    b = _seed_dir(tmp_path / "s43", 43, {"base": base, "big_over_small": ([1, 0, 1, 1], [0, 1]), "small_over_big": ([0, 0, 1, 1], [0, 0])},
                  delta=3.0)
    p = pool_delta([a, b], versus=[("big>small", "small>big")], n_boot=500)
    g = p["gain"]["big>small"]
    # seed 42: +1,+1,0,0 | +1,0 -> 3/6; seed 43: +1,0,0,0 | 0,0 -> 1/6; per item averaged then meaned -> 4/12
    assert g["per_seed"] == pytest.approx([0.5, 1 / 6]) and g["mean"] == pytest.approx(1 / 3) and g["items"] == 6
    assert g["ci95"][0] <= g["mean"] <= g["ci95"][1]
    assert p["gain"]["small>big"]["mean"] == pytest.approx((-1 / 6 - 1 / 6) / 2)
    (r,) = p["reversed"]
    assert (r["preferred"], r["reverse"]) == ("big>small", "small>big")
    assert r["mean"] == pytest.approx(1 / 3 + 1 / 6) and p["versus"][0]["mean"] == pytest.approx(r["mean"])
    assert p["judged_delta"] == pytest.approx({"big>small": 2.5, "small>big": -2.5})  # each seed audits its own rows
    assert p["spearman_delta_gain"] is None  # two conditions: too few to rank
    md = pool_report(p, tmp_path / "pooled").read_text()
    assert "| big>small | +2.500 | +0.333" in md and "Reversed pairs whose interval is above 0:" in md
    assert (tmp_path / "pooled" / "gain_vs_delta.png").stat().st_size > 1000


def test_pooling_refuses_runs_of_different_studies_and_unknown_conditions(tmp_path):
    models = {"base": ([0], [0]), "big_over_small": ([1], [1]), "small_over_big": ([0], [0])}
    a = _seed_dir(tmp_path / "a", 42, models)
    b = _seed_dir(tmp_path / "b", 43, models, dpo={"lr": 1e-3})
    with pytest.raises(DeltaError, match="not a seed of .* settings differ in dpo"):
        pool_delta([a, b])
    with pytest.raises(DeltaError, match="'nope' is not a condition every seed has"):
        pool_delta([a], versus=[("nope", "big>small")])
    with pytest.raises(DeltaError, match="no results.json"):
        pool_delta([tmp_path / "missing"])


def test_reversed_pairs_follow_the_judge_and_spearman_ranks_ties():
    res = {"big>small": {"chosen": "big", "rejected": "small", "audit": {"mean_delta": -0.5}},
           "small>big": {"chosen": "small", "rejected": "big", "audit": {"mean_delta": 0.5}}}
    assert reversed_pairs(res, ["big", "small"]) == [("small>big", "big>small")]
    no_audit = {n: {k: v for k, v in r.items() if k != "audit"} for n, r in res.items()}
    assert reversed_pairs(no_audit, ["big", "small"]) == [("big>small", "small>big")]
    # a variant with its own settings (DPO+NLL) is not the plain reverse's partner, nor is SFT
    res["nll"] = {"chosen": "small", "rejected": "big", "method": None, "audit": {"mean_delta": 0.5}}
    res["sft"] = {"chosen": "small", "rejected": None, "method": "sft"}
    assert reversed_pairs(res, ["big", "small"], {"nll": {"nll_coef": 1.0}}) == [("small>big", "big>small")]
    assert spearman([1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(np.corrcoef([1, 2, 3, 4], [1, 2.5, 2.5, 4])[0, 1])
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0) and np.isnan(spearman([1, 2], [5, 5]))


def test_the_pool_command_prints_the_table_and_checks_versus(tmp_path):
    from typer.testing import CliRunner

    from deltalearn.cli import app

    models = {"base": ([0, 1], [0]), "big_over_small": ([1, 1], [1]), "small_over_big": ([0, 0], [0])}
    a = _seed_dir(tmp_path / "a", 42, models)
    res = CliRunner().invoke(app, ["pool", str(a), "--out", str(tmp_path / "p"), "--versus", "big>small:small>big"])
    assert res.exit_code == 0, res.output
    assert "big>small" in res.output and (tmp_path / "p" / "pooled.json").is_file()
    nll = _seed_dir(tmp_path / "nll", 42, {**models, "big_over_small": ([0, 1], [1])}, dpo={"lr": 5e-5, "nll_coef": 1.0})
    res = CliRunner().invoke(app, ["pool", str(nll), "--baseline", str(a), "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    assert "dpo.nll_coef 0.0 -> 1.0" in res.output and "-0.333" in res.output
    res = CliRunner().invoke(app, ["pool", str(a), "--out", str(tmp_path / "p"), "--versus", "big>small"])
    assert res.exit_code != 0 and "expected A:B" in str(res.exception)


def test_a_baseline_study_is_compared_condition_by_condition_with_seeds_paired(tmp_path):
    base = ([0, 0, 1, 1], [0, 1])
    plain = [_seed_dir(tmp_path / f"plain{s}", s, {"base": base, "big_over_small": m, "small_over_big": ([0, 0, 0, 0], [0, 0])})
             for s, m in ((42, ([1, 0, 1, 1], [0, 1])), (43, ([0, 0, 1, 1], [0, 1])))]
    nll = [_seed_dir(tmp_path / f"nll{s}", s, {"base": base, "big_over_small": m, "small_over_big": ([0, 0, 0, 0], [0, 0])},
                     dpo={"lr": 5e-5, "nll_coef": 1.0})
           for s, m in ((43, ([1, 1, 1, 1], [1, 1])), (42, ([1, 0, 1, 1], [1, 1])))]  # given in the other order
    p = pool_delta(nll, baseline=plain[::-1], n_boot=500)
    b = p["baseline"]
    assert list(b["differs"]) == ["dpo.nll_coef"] and b["differs"]["dpo.nll_coef"][1] == 1.0
    d = b["conditions"]["big>small"]
    # seed 43 against seed 43: +1,+1,0,0 | +1,0 -> 3/6; seed 42 against 42: 0,0,0,0 | +1,0 -> 1/6
    assert d["per_seed"] == pytest.approx([0.5, 1 / 6]) and d["mean"] == pytest.approx(1 / 3) and d["items"] == 6
    assert b["conditions"]["small>big"]["mean"] == 0
    md = pool_report(p, tmp_path / "pooled").read_text()
    assert "settings that differ, baseline -> these runs: dpo.nll_coef" in md and "| big>small | +0.333" in md
    with pytest.raises(DeltaError, match=r"--baseline: its seeds \[42\] must be the pooled runs' seeds \[42, 43\]"):
        pool_delta(nll, baseline=plain[:1])
