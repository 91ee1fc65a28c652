import json
import re
import subprocess
import sys

import yaml
from typer.testing import CliRunner

from deltalearn.cli import app
from deltalearn.io import read_jsonl


def recipe(tmp_path, tiny_model_dir, **pairs):
    r = {
        "kind": "pairs",
        "out_dir": str(tmp_path / "run"),
        "prompts": {"source": "shipped", "split": "train", "limit": 5},
        "ladder": {"tiers": [
            {"name": "tiny", "model": str(tiny_model_dir)},
            {"name": "tiny-drop1", "model": str(tiny_model_dir), "degrade": {"drop_layers": [2]}},
            {"name": "tiny-drop2", "model": str(tiny_model_dir), "degrade": {"drop_layers": [1, 2]}},
        ]},
        "generate": {"batch_size": 2, "settings": {"max_new_tokens": 6}},
        "pairs": {"strategy": "size", "filters": {"drop_truncated": False, "drop_identical": False}, **pairs},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def test_pairs_command_end_to_end_and_rerun_is_all_cached(tmp_path, tiny_model_dir):
    path = recipe(tmp_path, tiny_model_dir)
    res = CliRunner().invoke(app, ["pairs", str(path)])
    assert res.exit_code == 0, res.output
    assert "preference datasets" in res.output and "tiny__over__tiny-drop1" in res.output
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert [d["dataset"] for d in manifest["datasets"]] == ["tiny__over__tiny-drop1", "tiny-drop1__over__tiny-drop2"]
    assert [g["generated"] for g in manifest["generation"]] == [5, 5, 5]
    rows = read_jsonl(run / "pairs" / "tiny__over__tiny-drop1.jsonl")
    assert len(rows) == 5 and all(r["chosen_size"] > r["rejected_size"] for r in rows)
    assert all(r["split"] == "train" for r in rows)
    res = CliRunner().invoke(app, ["pairs", str(path)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert [g["cached"] for g in manifest["generation"]] == [5, 5, 5]
    assert [g["generated"] for g in manifest["generation"]] == [0, 0, 0]


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, tiny_model_dir):
    path = recipe(tmp_path, tiny_model_dir, strategy="explicit", chosen="tiny", rejected="nope")
    proc = subprocess.run([sys.executable, "-m", "deltalearn.cli", "pairs", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (f'deltalearn: {path}: key "pairs.rejected": unknown tier \'nope\' '
                                                    "(ladder has: tiny, tiny-drop1, tiny-drop2)")
    proc = subprocess.run([sys.executable, "-m", "deltalearn.cli", "pairs", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "none.yaml: recipe file not found" in proc.stderr


def test_run_dry_run_prints_the_plan_and_the_launch_commands():
    res = CliRunner().invoke(app, ["run", "recipes/tulu3_qwen3b_over_1.5b.yaml", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "150,000" in res.output and "8.03B" in res.output and "device-hours" in res.output
    assert "--stage train --condition dpo_qwen3b_over_1.5b" in res.output
    bad = CliRunner().invoke(app, ["run", "recipes/logreg.yaml", "--dry-run"])
    assert "a logreg study has no plan (studies with one: delta)" in str(bad.exception)  # main(): one line, exit 2


def test_run_status_reads_the_run_directory_and_runs_nothing(tmp_path):
    args = ["run", "recipes/tulu3_qwen3b_over_1.5b.yaml", "--set", f"out_dir={tmp_path / 'r'}", "--stage", "status"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "(no data stage yet" in res.output and "0/" in res.output and not (tmp_path / "r").exists()
    lines = [l.strip() for l in res.output.splitlines() if l.strip().startswith("deltalearn run")]
    assert lines[0].endswith("--stage data") and lines[-1].endswith("--stage report")
    assert "--stage train --condition dpo_qwen3b_over_1.5b" in lines[1] and f"out_dir={tmp_path / 'r'}" in lines[1]
    bad = CliRunner().invoke(app, [*args, "--condition", "dpo_qwen3b_over_1.5b"])
    assert "drop --condition" in str(bad.exception)


def test_eval_bad_inputs_are_one_line_errors(tmp_path, tiny_model_dir):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated, as by a full disk
    for args, expected in (
        ([str(damaged), "--suite", "mc_lite", "--out", str(tmp_path / "ev")],
         rf"deltalearn: model 'damaged': damaged weights in {damaged} \(.*\); re-create or re-download it"),
        ([str(tiny_model_dir), "--suite", "mc_lite", "--limit", "-3"], "deltalearn: eval: limit must be a positive number, got -3"),
        ([str(tmp_path / "nowhere"), "--suite", "mc_lite"], "deltalearn: model 'nowhere': path not found or not a model"),
    ):
        proc = subprocess.run([sys.executable, "-m", "deltalearn.cli", "eval", *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr[-500:]
        lines = [l for l in proc.stderr.splitlines() if l.startswith("deltalearn:")]
        assert len(lines) == 1 and re.match(expected, lines[0]), proc.stderr[-800:]
        assert "Traceback" not in proc.stderr


def test_main_destroys_a_live_process_group_whatever_the_exit(tmp_path, monkeypatch):
    """A gloo group left alive at interpreter exit can abort a finished run (SIGABRT in finalisation)."""
    import os

    import pytest
    import torch.distributed as dist

    from deltalearn import cli

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(29000 + os.getpid() % 1000))
    monkeypatch.setattr(sys, "argv", ["deltalearn", "pairs", str(tmp_path / "none.yaml")])
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main()
        assert exit_.value.code == 2 and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_python_m_deltalearn_and_malformed_option_values_are_one_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    cases = [(["audit", str(good), "--judge", "length_chars", "--min-delta", "abc"], "--min-delta"),
             (["eval", "--no-such-option"], "--no-such-option"),
             (["ladder", "--measure", "--limit", "mbpp=x"], "mbpp=x"),
             (["eval", "embedded:smollm2-135m-instruct", "--backend", "nope", "--out", str(tmp_path / "e")], "--backend 'nope'"),
             (["ladder", "--measure", "--backend", "nope", "--out", str(tmp_path / "l")], "--backend 'nope'")]
    for args, named in cases:
        proc = subprocess.run([sys.executable, "-m", "deltalearn", *args], capture_output=True, text=True)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("deltalearn: ") and named in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and "╭" not in proc.stderr + proc.stdout
    proc = subprocess.run([sys.executable, "-m", "deltalearn", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "archive" in proc.stdout


def _train_recipe(tmp_path, model_dir, data):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"kind": "train", "out_dir": str(tmp_path / "ignored"), "data": str(data),
                                    "model": {"name": "tiny", "model": str(model_dir)}, "beta": 1.0, "lr": 0.01,
                                    "global_batch_size": 4, "max_length": 64, "tracker": "none", "max_steps": 1}))
    return path


def _rows(text):
    return [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": text}],
             "rejected": [{"role": "assistant", "content": "fox dog"}]} for i in range(8)]


def test_out_and_rerun_mean_the_same_on_every_command(tmp_path, tiny_model_dir):
    """--out is the output directory (out_dir) and --rerun redoes a changed run (on_change: rerun)."""
    from conftest import write_jsonl

    data = write_jsonl(tmp_path / "pairs.jsonl", _rows("The sky is blue."))
    r, out = _train_recipe(tmp_path, tiny_model_dir, data), tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(r), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").is_file() and not (tmp_path / "ignored").exists()
    write_jsonl(data, _rows("The sea is green."))
    proc = subprocess.run([sys.executable, "-m", "deltalearn", "train", str(r), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "other inputs (data_sha256" in proc.stderr and "--rerun" in proc.stderr
    res = CliRunner().invoke(app, ["train", str(r), "--out", str(out), "--rerun"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "record.json").read_text())["train"]["state"] == "done"
    for flag in ("--out", "--to"):  # archive: --out, and --to as before
        res = CliRunner().invoke(app, ["archive", str(out), flag, str(tmp_path / f"kept{flag}")])
        assert res.exit_code == 0 and (tmp_path / f"kept{flag}" / "summary.json").is_file(), res.output
    for flag in ("--out", "--out-dir"):
        res = CliRunner().invoke(app, ["audit", str(data), "--judge", "length_chars", "--out", str(tmp_path / f"a{flag}")]
                                 if flag == "--out" else ["audit", str(data), "--judge", "length_chars", flag, str(tmp_path / "a2")])
        assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a--out" / "summary.json").read_text())["seed"] == 42  # the one default seed


def test_rerun_on_a_recipe_that_redoes_nothing_is_one_line(tmp_path):
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump({"kind": "logreg", "out_dir": str(tmp_path / "x")}))
    proc = subprocess.run([sys.executable, "-m", "deltalearn", "run", str(path), "--rerun"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "deltalearn: --rerun: a logreg recipe redoes nothing (its outputs are reused only when their inputs match)"
    assert not (tmp_path / "x").exists()


def test_recipe_explain_shows_every_key_with_its_description():
    from deltalearn.recipes import kinds

    for kind, model in kinds().items():
        res = CliRunner().invoke(app, ["recipe", "explain", kind])
        assert res.exit_code == 0, res.output
        rows = [line.split(" | ") for line in res.output.splitlines()[2:]]
        keys = {r[0].removeprefix("| ") for r in rows}
        assert set(model.model_fields) <= keys and all(r[3].strip(" |") for r in rows), kind
    res = CliRunner().invoke(app, ["recipe", "explain", "train"])
    assert '| beta | float | 5.0 |' in res.output
    proc = subprocess.run([sys.executable, "-m", "deltalearn", "recipe", "explain", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("deltalearn: unknown recipe kind 'nope' (kinds: pairs, train")


def test_the_docs_key_tables_are_the_recipe_models_own():
    from pathlib import Path

    from deltalearn.recipes_explain import explain, kinds

    doc = (Path(__file__).resolve().parents[1] / "docs" / "recipe-keys.md").read_text()
    for kind in kinds():
        assert f"## kind: {kind}\n\n{explain(kind)}\n" in doc, f"docs/recipe-keys.md is stale for {kind}: regenerate it"
