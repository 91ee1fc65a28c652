"""Sharded training for real: FSDP2 and DeepSpeed ZeRO-2/3 on two CPU processes over gloo, through
`deltalearn train` under torchrun, on the tiny model. Each run has its own cache, so the two-process
reference pass (split, then summed across processes) runs too. DeepSpeed is an opt-in install: its
cases are skipped where it is missing (as in CI)."""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from deltalearn.io import read_jsonl
from test_train import synthetic_pairs
from conftest import write_jsonl

ENGINES = [
    pytest.param({"sharding": "fsdp2"}, id="fsdp2"),
    pytest.param({"sharding": "deepspeed", "zero_stage": 2}, id="zero2",
                 marks=pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (opt-in)")),
    pytest.param({"sharding": "deepspeed", "zero_stage": 3}, id="zero3",
                 marks=pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (opt-in)")),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tmp_path, name, recipe, procs, kill=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**recipe, "out_dir": str(tmp_path / name)}))
    env = {**os.environ, "DELTALEARN_CACHE": str(tmp_path / f"cache-{name}"), "OMP_NUM_THREADS": "1"}
    env.pop("DELTALEARN_KILL_AT", None)
    if kill:
        env["DELTALEARN_KILL_AT"] = kill
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", str(_port())]
              if procs > 1 else [sys.executable])
    proc = subprocess.run([*launch, "-m", "deltalearn.cli", "train", str(path)], capture_output=True, text=True, env=env,
                          timeout=600)
    return proc


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs(24))
    return {"kind": "train", "model": {"name": "tiny", "model": str(tiny_model_dir)}, "data": str(data), "method": "dpo_norm",
            "beta": 1.0, "lr": 0.01, "global_batch_size": 4, "micro_batch_size": 1, "max_length": 64, "warmup_ratio": 0.0,
            "tracker": "none", "max_steps": 4}


@pytest.mark.parametrize("engine", ENGINES)
def test_two_sharded_processes_follow_one_process_and_resume_after_a_kill(tmp_path, recipe, engine):
    from safetensors.torch import load_file

    assert _train(tmp_path, "one", recipe, 1).returncode == 0
    sharded = {**recipe, **engine}
    proc = _train(tmp_path, "two", sharded, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (read_jsonl(tmp_path / n / "metrics.jsonl") for n in ("one", "two"))
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["rewards/margin"] == pytest.approx(b["rewards/margin"], abs=1e-4)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["reference"]["cached"] is False  # its own, two-process reference pass
    wa, wb = (load_file(str(tmp_path / n / "final" / "model.safetensors")) for n in ("one", "two"))
    assert wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() < 1e-4 for k in wa)

    # checkpoints every step, two kept; the main process is SIGKILLed after step 3, before its checkpoint
    ckpt = {**sharded, "save_every": 1, "keep_checkpoints": 2}
    assert _train(tmp_path, "killed", ckpt, 2, kill="train.step:3").returncode != 0
    root = tmp_path / "killed" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-0000002"
    proc = _train(tmp_path, "killed", ckpt, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["resumed_from"] == 2
    resumed = read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in two], abs=1e-4)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000002", "step-0000003"]  # pruned to two
