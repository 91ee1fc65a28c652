"""Fault injection: a tiny delta study is SIGKILLed (a real kill of the child process, not an exception)
at more than 20 points across every stage, including inside atomic writes and mid-line in a JSONL
append, rerun after each kill, and must end with the results of an uninterrupted run, with no JSONL
row or checkpoint lost or duplicated and no temporary file left behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deltalearn.io import read_jsonl

# In pipeline order: each rerun resumes past the work already done and dies at the next point.
KILLS = [
    "generate.batch:1", "append.torn:1", "generate.batch:2", "append.torn:1",
    "atomic_path.before_rename:1", "atomic_dir.before_rename:1", "audit.before_record:1", "study.after_data:1",
    "train.step:1", "checkpoint.before_latest:1", "atomic_dir.old_removed:1", "train.step:2",
    "train.before_summary:1", "atomic_dir.old_removed:1", "train.before_done:1",
    "train.step:1", "atomic_dir.before_rename:2",
    "eval.loglik_flush:1", "append.torn:1", "eval.before_record:1", "generate.batch:1", "append.torn:1",
    "eval.before_record:1", "atomic_path.before_rename:3", "eval.before_record:2", "study.before_results:1",
]


def _recipe(tiny: str, out: Path) -> dict:
    return {
        "kind": "delta", "out_dir": str(out), "student": {"name": "t4", "model": tiny},
        "ladder": {"tiers": [{"name": "t4", "model": tiny}, {"name": "t2", "model": tiny, "degrade": {"drop_layers": [1, 2]}}]},
        "prompts": {"split": "train", "limit": 8}, "generate": {"batch_size": 4, "settings": {"max_new_tokens": 8}},
        "conditions": [{"name": "a", "chosen": "t4", "rejected": "t2"}, {"name": "b", "method": "sft", "chosen": "t2"}],
        "audit": {"judge": "loglik"},
        "eval": {"suites": ["mc_lite", "ifeval_lite"], "limit": 20, "max_new_tokens": 6, "batch_size": 10,
                 "gain": ["mc_lite.acc_norm", "ifeval_lite.instruction_strict"]},
        "dpo": {"lr": 1e-3, "global_batch_size": 4, "max_length": 128, "options": {"save_every": 1, "keep_checkpoints": 2}},
        "sft": {"method": "sft", "lr": 1e-3, "global_batch_size": 4, "max_length": 128, "options": {"save_every": 1}},
    }


def _run(recipe: Path, kill: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DELTALEARN_KILL_AT"}
    if kill:
        env["DELTALEARN_KILL_AT"] = kill
    proc = subprocess.run([sys.executable, "-m", "deltalearn.cli", "run", str(recipe)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode in (0, -9), proc.stderr[-3000:]
    return proc.returncode


def test_a_study_killed_at_every_stage_ends_as_if_never_killed(tmp_path, tiny_model_dir):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    recipe = tmp_path / "killed.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(str(tiny_model_dir), killed_dir)))
    kills = [k for k in KILLS if _run(recipe, k) == -9]
    assert len(kills) >= 20, f"only {len(kills)} kill points were reached: {kills}"
    assert _run(recipe, None) == 0
    straight = tmp_path / "straight.yaml"
    straight.write_text(yaml.safe_dump(_recipe(str(tiny_model_dir), straight_dir)))
    assert _run(straight, None) == 0

    a, b = (json.loads((d / "results.json").read_text()) for d in (killed_dir, straight_dir))
    for name in ("a", "b"):
        ra, rb = a["results"][name], b["results"][name]
        assert ra["pairs"] == rb["pairs"]
        assert ra["train"]["loss"] == pytest.approx(rb["train"]["loss"], abs=1e-5)
        for metric, value in rb["metrics"].items():
            assert ra["metrics"][metric]["value"] == pytest.approx(value["value"], abs=1e-5), (name, metric)
        assert ra["gain"]["mean"] == pytest.approx(rb["gain"]["mean"], abs=1e-5)
    assert a["results"]["a"]["audit"]["mean_delta"] == pytest.approx(b["results"]["a"]["audit"]["mean_delta"], abs=1e-6)
    assert a["base"] == pytest.approx(b["base"])

    # nothing lost, nothing twice
    for tier in ("t4", "t2"):
        rows = read_jsonl(killed_dir / "generations" / f"{tier}.jsonl")
        assert len(rows) == len({r["key"] for r in rows}) == 8
    for cond, steps in (("a", 2), ("b", 2)):
        run = killed_dir / "models" / cond
        assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == list(range(1, steps + 1))
        latest = (run / "checkpoints" / "latest").read_text().strip()
        for ckpt in (run / "checkpoints").glob("step-*"):
            assert (ckpt / "state.json").is_file() and (ckpt / "trainable.safetensors").is_file()
        assert (run / "checkpoints" / latest).is_dir()
    for ev in (killed_dir / "eval").iterdir():
        for cache in ("generations.jsonl", "loglik_cache.jsonl"):
            rows = read_jsonl(ev / cache)
            assert len(rows) == len({r["key"] for r in rows}), (ev, cache)
        assert len(read_jsonl(ev / "mc_lite.jsonl")) == 20 and len(read_jsonl(ev / "ifeval_lite.jsonl")) == 20
    leftovers = [str(p) for p in killed_dir.rglob(".*") if ".partial" in p.name or p.name.endswith(".tmp") or p.is_dir()]
    assert leftovers == [], leftovers
