"""Sharded training on the embedded model: one process against two processes of each engine (DDP through
accelerate, FSDP2, DeepSpeed ZeRO-2 and ZeRO-3 when installed), on this CPU over gloo, each run with its
own cache (so each computes its own reference pass). Same pairs, same global batch, 4 steps of
length-normalised DPO; the table shows every step's loss and the largest difference to one process.

    .venv/bin/python benchmarks/bench_sharded.py --pairs 16 --steps 4

Two processes on a 2-core machine run one thread each: the point is the trajectory, not the speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    import yaml
    from rich.console import Console
    from rich.table import Table

    from bench_train import make_pairs
    from deltalearn.io import read_jsonl

    data = make_pairs(args.pairs, 96)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sharded-"))
    base = {"kind": "train", "preset": "cpu", "data": str(data), "global_batch_size": 4, "micro_batch_size": 1, "lr": 2e-5,
            "max_steps": args.steps, "tracker": "none", "warmup_ratio": 0.0, "lean_mlp": False}
    runs = {"1 process": ({}, 1), "DDP x2": ({}, 2), "FSDP2 x2": ({"sharding": "fsdp2"}, 2)}
    if importlib.util.find_spec("deepspeed"):
        runs.update({"ZeRO-2 x2": ({"sharding": "deepspeed", "zero_stage": 2}, 2),
                     "ZeRO-3 x2": ({"sharding": "deepspeed", "zero_stage": 3}, 2)})
    res = {}
    for name, (extra, procs) in runs.items():
        out = tmp / name.replace(" ", "_")
        recipe = tmp / f"{out.name}.yaml"
        recipe.write_text(yaml.safe_dump({**base, **extra, "out_dir": str(out)}))
        env = {**os.environ, "DELTALEARN_CACHE": str(tmp / f"cache-{out.name}"), "OMP_NUM_THREADS": str(2 // procs)}
        launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", str(_port())]
                  if procs > 1 else [sys.executable])
        t0 = time.perf_counter()
        proc = subprocess.run([*launch, "-m", "deltalearn.cli", "train", str(recipe)], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            res[name] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200], "seconds": seconds}
            continue
        res[name] = {"losses": [r["loss"] for r in read_jsonl(out / "metrics.jsonl")], "seconds": round(seconds, 1),
                     "processes": json.loads((out / "summary.json").read_text())["processes"]}
    ref = res["1 process"]["losses"]
    t = Table(title=f"embedded SmolLM2-135M, {args.pairs} pairs, global batch 4, {args.steps} DPO steps, float32, this CPU (gloo)")
    for c in ("run", *(f"loss step {i + 1}" for i in range(args.steps)), "largest |difference| to 1 process", "seconds"):
        t.add_column(c, justify="right" if c != "run" else "left")
    for name, r in res.items():
        if "error" in r:
            t.add_row(name, *(["-"] * args.steps), r["error"], f"{r['seconds']:.0f}")
            continue
        diff = max(abs(a - b) for a, b in zip(r["losses"], ref))
        r["max_diff"] = diff
        t.add_row(name, *(f"{x:.6f}" for x in r["losses"]), f"{diff:.1e}", f"{r['seconds']:.0f}")
    Console().print(t)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
