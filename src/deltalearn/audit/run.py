"""`deltalearn audit`: measure a pairs dataset's delta with a judge before training on it."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from ..io import write_json_atomic, write_jsonl_atomic
from ..pairs.dataset import load_pairs, message_text
from ..rundir import MANIFEST, summary_path
from .stats import by_category, delta_summary, pairwise_agreement


def _swap(row: dict, judge: str) -> dict:
    """The same pair with chosen and rejected exchanged, provenance swapped with them."""
    out = dict(row)
    for a, b in (("chosen", "rejected"), ("chosen_tier", "rejected_tier"), ("chosen_model", "rejected_model"),
                 ("chosen_size", "rejected_size"), ("chosen_tokens", "rejected_tokens")):
        if a in row or b in row:
            out[a], out[b] = row.get(b), row.get(a)
    out["label_source"] = f"judge:{judge}"
    return out


def audit_pairs(path: str | Path, judge, *, n: int | None = 100, seed: int = 0, out_dir: str | Path,
                min_delta: float | None = None, relabel: bool = False, tie_tol: float = 0.0,
                reference: dict | None = None) -> dict:
    path, out = Path(path), Path(out_dir)
    rows = load_pairs(path)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    sample = sorted(order[: n or len(rows)])
    t0 = time.perf_counter()
    items = [(message_text(rows[i]["prompt"]), message_text(rows[i]["chosen"]), message_text(rows[i]["rejected"])) for i in sample]
    per_pair = []
    if judge.kind == "pointwise":
        scores = judge.score([(p, c) for p, c, _ in items] + [(p, r) for p, _, r in items])
        k = len(items)
        for i, sc, sr in zip(sample, scores[:k], scores[k:]):
            delta = None if sc is None or sr is None else sc - sr
            verdict = None if delta is None else ("chosen" if delta > tie_tol else "rejected" if delta < -tie_tol else "tie")
            per_pair.append({"row": i, "prompt_id": rows[i].get("prompt_id"), "category": rows[i].get("category"),
                             "chosen_score": sc, "rejected_score": sr, "delta": delta, "verdict": verdict})
        deltas = [p["delta"] for p in per_pair]
        summary = delta_summary(deltas, tie_tol=tie_tol, seed=seed)
        both = [p for p in per_pair if p["delta"] is not None]  # each side's mean score (for asserts: pass rates)
        summary["mean_score"] = ({side: sum(p[f"{side}_score"] for p in both) / len(both) for side in ("chosen", "rejected")}
                                 if both else None)
        summary["by_category"] = by_category([p["category"] for p in per_pair if p["delta"] is not None],
                                             [p["delta"] for p in per_pair if p["delta"] is not None], tie_tol=tie_tol)
    else:
        verdicts = judge.compare(items)
        for i, v in zip(sample, verdicts):
            per_pair.append({"row": i, "prompt_id": rows[i].get("prompt_id"), "category": rows[i].get("category"),
                             "delta": None if v is None else {"chosen": 1.0, "tie": 0.0, "rejected": -1.0}[v], "verdict": v})
        summary = pairwise_agreement(verdicts)
        summary["by_category"] = by_category([p["category"] for p in per_pair if p["verdict"]],
                                             [p["delta"] for p in per_pair if p["verdict"]])
    seconds = time.perf_counter() - t0
    unparseable = sum(p["verdict"] is None for p in per_pair)
    summary.update({"dataset": str(path), "judge": judge.name, "judge_kind": judge.kind, "pairs": len(rows),
                    "sampled": len(sample), "seed": seed, "unparseable": unparseable, "seconds": round(seconds, 2)})
    write_jsonl_atomic(out / "audit.jsonl", per_pair)

    judged = {p["row"]: p for p in per_pair}
    if min_delta is not None and judge.kind == "pointwise":
        kept = [rows[i] for i in sample if judged[i]["delta"] is not None and judged[i]["delta"] >= min_delta]
        write_jsonl_atomic(out / "filtered.jsonl", kept)
        summary["filtered"] = {"min_delta": min_delta, "kept": len(kept), "dropped": len(sample) - len(kept) - unparseable,
                               "unparseable": unparseable, "path": str(out / "filtered.jsonl")}
    if relabel:
        relabelled, counts = [], {"kept": 0, "swapped": 0, "tie_dropped": 0, "unparseable_dropped": 0}
        for i in sample:
            v = judged[i]["verdict"]
            if v == "chosen":
                relabelled.append({**rows[i], "label_source": f"judge:{judge.name}"})
                counts["kept"] += 1
            elif v == "rejected":
                relabelled.append(_swap(rows[i], judge.name))
                counts["swapped"] += 1
            else:
                counts["tie_dropped" if v == "tie" else "unparseable_dropped"] += 1
        write_jsonl_atomic(out / "relabelled.jsonl", relabelled)
        summary["relabelled"] = {**counts, "path": str(out / "relabelled.jsonl")}
    if judge.kind == "pointwise":
        from ..report.plots import delta_histogram

        hist = [p["delta"] for p in per_pair if p["delta"] is not None]
        summary["plot"] = str(delta_histogram(hist, out / "delta_hist.png",
                                              title=f"{path.name}: {judge.name} delta, agreement {summary.get('agreement', 0):.0%}"))
    manifest = path.parent.parent / MANIFEST  # a `deltalearn pairs` run: out_dir/pairs/<name>.jsonl
    if manifest.is_file():
        from .cost import cost_report

        gen = json.loads(manifest.read_text()).get("generation", [])
        tiers = {rows[0].get("chosen_tier"), rows[0].get("rejected_tier")}
        summary["cost"] = cost_report([g for g in gen if g["tier"] in tiers],
                                      {"params": judge.params, "tokens": judge.tokens, "seconds": seconds}, reference)
    write_json_atomic(summary_path(out), summary)
    return summary
