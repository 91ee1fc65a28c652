"""Measure a ladder before using it (`deltalearn ladder RECIPE --measure`): for every tier, bits/char on
the shipped held-out prose, multiple choice (ARC-Easy, ARC-Challenge), instruction following
(ifeval_lite), code (HumanEval and MBPP pass@1) and generation speed here. The order of the tiers is what
these say, metric by metric, not what parameter counts suggest: a coder model may lose at ARC and
win at HumanEval, so each study states which order it uses and why.

Each tier's scores are evaluation runs (`<out>/<tier>/`, resumable and reused only for the same
inputs); bits/char and speed are kept in `<out>/<tier>/measure.json` under the weights' fingerprint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..io import write_json_atomic, write_text_atomic
from ..rundir import LadderDir

# suite -> (metric reported, default number of items: a fixed subset, the same for every tier).
# DEFAULT is sized so the 1.5B tier measures in under an hour on 2 cores; --limit SUITE=N for more.
# The instruction-following suites need the opt-in checkers (scripts/install_if.sh): --suite ifbench.
SUITES = {"arc_easy": ("acc", 100), "arc_challenge": ("acc", 100), "ifeval_lite": ("instruction_strict", 30),
          "humaneval": ("pass@1", 32), "mbpp": ("pass@1", 32),
          "ifbench": ("instruction_loose", 294), "ifeval_heldout": ("instruction_loose", 600)}
DEFAULT = ("arc_easy", "arc_challenge", "ifeval_lite", "humaneval", "mbpp")
SPEED_PROMPTS, SPEED_TOKENS = 16, 64


def _bpc_and_speed(tier, path: Path) -> dict:
    from ..generate.base import GenerationSettings
    from ..generate.hf import HFBackend
    from ..generate.prompts import load_prompts
    from ..models.loading import load_model, tier_fingerprint
    from ..models.quality import bits_per_char

    fp = tier_fingerprint(tier)
    if path.is_file() and json.loads(path.read_text()).get("fingerprint") == fp:
        return json.loads(path.read_text())
    loaded = load_model(tier)
    bpc = bits_per_char(loaded.model, loaded.tokenizer)
    backend = HFBackend(loaded)
    convs = [[{"role": "user", "content": p.text}] for p in load_prompts(split="test", limit=SPEED_PROMPTS)]
    t0 = time.perf_counter()
    outs = backend.generate(convs, GenerationSettings(max_new_tokens=SPEED_TOKENS))
    seconds = time.perf_counter() - t0
    res = {"fingerprint": fp, "params": loaded.size, "bits_per_char": bpc,
           "tokens_per_s": sum(o.n_tokens for o in outs) / seconds, "speed_setting": f"{SPEED_PROMPTS} prompts, batch "
           f"{SPEED_PROMPTS}, up to {SPEED_TOKENS} new tokens, greedy, float32"}
    write_json_atomic(path, res)
    return res


def measure_ladder(ladder, out: str | Path, *, limits: dict | None = None, batch_size: int = 16, console=None,
                   suites: list[str] | None = None, generate=None) -> dict:
    from ..errors import DeltaError
    from ..evaluate.run import evaluate

    out = LadderDir(out)
    suites = list(suites or DEFAULT)
    unknown = [s for s in [*suites, *(limits or {})] if s not in SUITES]
    if unknown:
        raise DeltaError(f"ladder --measure: unknown suite {unknown[0]!r} (measured suites: {', '.join(SUITES)})")
    limits = {**{s: SUITES[s][1] for s in suites}, **{s: n for s, n in (limits or {}).items() if s in suites}}
    rows = {}
    for tier in ladder.tiers:
        d = out.tier(tier.name)
        row = _bpc_and_speed(tier, out.measure(tier.name))
        for suite in suites:
            metric = SUITES[suite][0]
            t0 = time.perf_counter()
            s = evaluate(tier, [suite], d, limit=limits[suite], batch_size=batch_size, console=console, generate=generate)
            m = s["suites"][suite]["metrics"][metric]
            row[suite] = {"metric": metric, "mean": m["mean"], "ci95": m["ci95"], "n": s["suites"][suite]["n"],
                          "seconds": round(time.perf_counter() - t0, 1)}
        rows[tier.name] = row
        write_json_atomic(out.result, {"tiers": rows, "limits": limits, "suites": suites})
    orders = {"bits_per_char (lower is better)": sorted(rows, key=lambda n: rows[n]["bits_per_char"])}
    for suite in suites:
        orders[f"{suite} {SUITES[suite][0]}"] = sorted(rows, key=lambda n: -rows[n][suite]["mean"])
    result = {"tiers": rows, "limits": limits, "suites": suites, "orders": orders}
    write_json_atomic(out.result, result)
    write_text_atomic(out.table, ladder_table(result))
    return result


def ladder_table(result: dict) -> str:
    rows, limits, suites = result["tiers"], result["limits"], result.get("suites", DEFAULT)
    head = ["tier", "parameters", "bits/char"] + [f"{s} {SUITES[s][0]} (n={limits[s]})" for s in suites] + ["tokens/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, f"{r['params'] / 1e6:,.0f}M", f"{r['bits_per_char']:.3f}"]
        cells += [f"{r[s]['mean']:.3f} ({r[s]['ci95'][0]:.2f}..{r[s]['ci95'][1]:.2f})" for s in suites]
        lines.append("| " + " | ".join(cells + [f"{r['tokens_per_s']:.1f}"]) + " |")
    lines += ["", "Order of the tiers, best first, by each measurement (= : the same value):", ""]
    for key, names in result["orders"].items():
        suite = key.split()[0]
        value = [rows[n]["bits_per_char"] if suite == "bits_per_char" else rows[n][suite]["mean"] for n in names]
        text = names[0] + "".join(f" {'=' if v == prev else '>'} {n}" for n, v, prev in zip(names[1:], value[1:], value))
        lines.append(f"- {key}: {text}")
    return "\n".join(lines) + "\n"
