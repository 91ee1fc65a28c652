"""A delta study's seeds pooled: each condition's paired difference to the student, item by item,
averaged over the seeds and bootstrapped over the items; chosen comparisons between conditions (the
reversed pairs of a grid among them); the rank correlation of judged delta with gain; and, against a
baseline (the same study at another setting, e.g. another loss), each condition's paired difference to
the same condition there. Reads only the run directories' results.json and per-item evaluation files;
nothing is recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import DeltaError
from ...io import read_jsonl, write_json_atomic, write_text_atomic
from ...metrics.stats import bootstrap_ci, spearman
from ...rundir import RESULTS, STUDENT, RunDir, read_summary, suite_items

# Keys a seed's run may change without making it another study.
SEED_KEYS = {"seed", "out_dir", "description"}


def _load(run_dirs: list[Path]) -> list[dict]:
    runs = []
    for d in run_dirs:
        path = Path(d) / RESULTS
        if not path.is_file():
            raise DeltaError(f"{d}: no results.json; run its report stage first (deltalearn run RECIPE --stage report)")
        s = json.loads(path.read_text())
        if s.get("study") != "delta":
            raise DeltaError(f"{path}: not a delta study (study: {s.get('study')!r})")
        runs.append({"dir": Path(d), **s})
    first = {k: v for k, v in runs[0]["config"].items() if k not in SEED_KEYS}
    for r in runs[1:]:
        other = {k: v for k, v in r["config"].items() if k not in SEED_KEYS}
        diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if diff:
            raise DeltaError(f"{r['dir']}: not a seed of {runs[0]['dir']}'s study: settings differ in {', '.join(diff)}")
    return runs


def _signed_items(eval_dir: Path, metrics: list[str], better: dict[str, str]) -> dict[str, float]:
    """One number per (suite, item), signed so that higher is better: the items of all metrics pooled."""
    out = {}
    for metric in metrics:
        suite, m = metric.split(".", 1)
        path = suite_items(eval_dir, suite)
        if not path.is_file():
            raise DeltaError(f"{path}: missing; metric {metric} needs that suite evaluated")
        sign = 1.0 if better.get(metric, "higher") == "higher" else -1.0
        out.update({f"{metric}/{r['id']}": sign * float(r[m]) for r in read_jsonl(path)})
    return out


def _run_names(run: dict) -> dict[str, str]:
    from .study import DeltaStudy

    return {c.name: c.run_name for c in DeltaStudy.model_validate(run["config"]).all_conditions()}


def _better(run: dict) -> dict[str, str]:
    base = read_summary(RunDir(run["dir"]).eval(STUDENT))["suites"]
    return {f"{s}.{m}": v.get("better", "higher") for s, info in base.items() for m, v in info["metrics"].items()}


def _items(run: dict, names: list[str], metrics: list[str]) -> dict[str, dict[str, float]]:
    better, run_names = _better(run), _run_names(run)
    rd = RunDir(run["dir"])
    one = {STUDENT: _signed_items(rd.eval(STUDENT), metrics, better)}
    one.update({n: _signed_items(rd.eval(run_names[n]), metrics, better) for n in names})
    return one


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _against(runs: list[dict], items: list[dict], metrics: list[str], baseline_dirs: list[Path],
             seed: int, n_boot: int) -> dict:
    """Each condition minus the same condition of the baseline study, item by item, the seeds paired by
    their seed value; the settings that differ are listed so that the comparison says what it compares."""
    base_runs = _load(baseline_dirs)
    seeds = [r["config"]["seed"] for r in runs]
    by_seed = {r["config"]["seed"]: r for r in base_runs}
    if sorted(by_seed) != sorted(seeds) or len(by_seed) != len(base_runs):
        raise DeltaError(f"--baseline: its seeds {sorted(r['config']['seed'] for r in base_runs)} must be the pooled "
                         f"runs' seeds {sorted(seeds)}, one run each")
    mine, theirs = (_flat({k: v for k, v in r["config"].items() if k not in SEED_KEYS}) for r in (runs[0], base_runs[0]))
    differs = {k: [theirs.get(k), mine.get(k)] for k in sorted(mine.keys() | theirs.keys()) if mine.get(k) != theirs.get(k)}
    names = [n for n in items[0] if n != "base" and all(n in b["results"] for b in base_runs)]
    if not names:
        raise DeltaError(f"--baseline {baseline_dirs[0]}: no condition in common with {runs[0]['dir']}")
    other = [_items(by_seed[s], names, metrics) for s in seeds]
    conds = {n: _paired([a[n] for a in items], [b[n] for b in other], seed, n_boot) for n in names}
    return {"runs": [str(by_seed[s]["dir"]) for s in seeds], "differs": differs, "conditions": conds}


def _paired(xs: list[dict[str, float]], ys: list[dict[str, float]], seed: int, n_boot: int) -> dict:
    """x minus y per seed on the items both have, then pooled over the seeds."""
    return _pooled([{k: x[k] - y[k] for k in x.keys() & y.keys()} for x, y in zip(xs, ys)], seed, n_boot)


def describe_differs(differs: dict) -> str:
    return "; ".join(f"{k} {v[0]} -> {v[1]}" for k, v in differs.items()) or "no setting differs"


def _pooled(per_seed: list[dict[str, float]], seed: int, n_boot: int) -> dict:
    """Item-level differences of several seeds: averaged per item over the seeds (items every seed has),
    bootstrapped over items; each seed's own mean beside it."""
    keys = sorted(set.intersection(*(set(d) for d in per_seed)))
    x = np.array([np.mean([d[k] for d in per_seed]) for k in keys])
    lo, hi = bootstrap_ci(x, n_boot=n_boot, seed=seed)
    return {"mean": float(x.mean()), "ci95": [lo, hi], "items": len(keys),
            "per_seed": [float(np.mean([d[k] for k in keys])) for d in per_seed]}


def reversed_pairs(results: dict, ladder: list[str], train: dict | None = None) -> list[tuple[str, str]]:
    """(preferred, reverse) for every condition whose reverse was also trained with the same method and
    the same condition settings (`train`: name -> its overrides; DPO+NLL is not plain DPO's reverse);
    the preferred direction is the one the judge scores positive (the ladder's order without an audit)."""
    rank = {t: i for i, t in enumerate(ladder)}
    train = train or {}

    def sides(n: str, r: dict, flip: bool = False) -> tuple:
        a, b = (r["rejected"], r["chosen"]) if flip else (r["chosen"], r["rejected"])
        return a, b, r.get("method"), json.dumps(train.get(n) or {}, sort_keys=True)

    by_sides = {sides(n, r): n for n, r in results.items() if r.get("rejected")}
    out = []
    for key, n in by_sides.items():
        a, b = key[:2]
        rev = by_sides.get(sides(n, results[n], flip=True))
        if rev is None:
            continue
        audit = results[n].get("audit") or {}
        delta = audit.get("mean_delta")
        if (delta is not None and delta > 0) or (delta is None and rank[a] < rank[b]):
            out.append((n, rev))
    return sorted(out)


def _mean_delta(runs: list[dict], names: list[str]) -> dict:
    """Each condition's judged delta averaged over the seeds: every seed's audit samples its own rows, so
    one seed's figure alone carries that seed's sampling noise. Conditions some seed did not judge are left out."""
    out = {}
    for n in names:
        ds = [(r["results"][n].get("audit") or {}).get("mean_delta") for r in runs]
        if all(d is not None for d in ds):
            out[n] = sum(ds) / len(ds)
    return out


def pool_delta(run_dirs: list[Path], *, metrics: list[str] | None = None, versus: list[tuple[str, str]] = (),
               baseline: list[Path] = (), seed: int = 0, n_boot: int = 10_000) -> dict:
    runs = _load(run_dirs)
    metrics = metrics or runs[0]["config"]["eval"]["gain"]
    names = [n for n in runs[0]["results"] if all(n in r["results"] for r in runs)]
    missing = sorted({n for r in runs for n in r["results"]} - set(names))
    for a, b in versus:
        for n in (a, b):
            if n not in names:
                raise DeltaError(f"--versus {a}:{b}: {n!r} is not a condition every seed has ({', '.join(names)})")
    items = [_items(r, names, metrics) for r in runs]  # per seed: {"base": {...}, condition: {...}}

    def diff(a: str, b: str) -> dict:
        return _paired([s[a] for s in items], [s[b] for s in items], seed, n_boot)

    res0 = runs[0]["results"]
    gains = {n: diff(n, "base") for n in names}
    judged = _mean_delta(runs, names)
    pairs = reversed_pairs({n: {**res0[n], "audit": {"mean_delta": judged.get(n)}} for n in names},
                           [t["name"] for t in runs[0]["config"]["ladder"]["tiers"]],
                           {c["name"]: c.get("train") for c in runs[0]["config"].get("conditions") or []})
    rho = spearman([judged[n] for n in judged], [gains[n]["mean"] for n in judged]) if len(judged) >= 3 else None
    return {"runs": [str(r["dir"]) for r in runs], "seeds": [r["config"]["seed"] for r in runs], "metrics": metrics,
            "missing": missing, "gain": gains, "judged_delta": judged,
            "reversed": [{"preferred": a, "reverse": b, **diff(a, b)} for a, b in pairs],
            "versus": [{"a": a, "b": b, **diff(a, b)} for a, b in versus],
            "spearman_delta_gain": rho, "name": runs[0]["name"],
            "baseline": _against(runs, items, metrics, list(baseline), seed, n_boot) if baseline else None}


def _ci(d: dict) -> str:
    return f"{d['mean']:+.3f} ({d['ci95'][0]:+.3f}..{d['ci95'][1]:+.3f})"


def pool_report(p: dict, out: Path) -> Path:
    from ...report.plots import scatter_with_ci
    from .report import short_labels

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "pooled.json", p)
    seeds = ", ".join(map(str, p["seeds"]))
    lines = [f"# {p['name']}: {len(p['seeds'])} seed(s) pooled ({seeds})", "",
             f"Metric: {', '.join(p['metrics'])}, items pooled, signed so that positive is better. Each item's "
             "paired difference is averaged over the seeds, then bootstrapped over the items (95% interval).", "",
             "| condition | judged delta (mean of seeds) | gain over the student | per seed | items |", "|---|---|---|---|---|"]
    for n, g in p["gain"].items():
        d = p["judged_delta"].get(n)
        lines.append(f"| {n} | {'-' if d is None else f'{d:+.3f}'} | {_ci(g)} | "
                     f"{', '.join(f'{x:+.3f}' for x in g['per_seed'])} | {g['items']} |")
    if p["reversed"]:
        lines += ["", "Reversed pairs: the direction the judge prefers minus its reverse.", "",
                  "| preferred | reverse | difference | per seed | above 0 |", "|---|---|---|---|---|"]
        lines += [f"| {r['preferred']} | {r['reverse']} | {_ci(r)} | {', '.join(f'{x:+.3f}' for x in r['per_seed'])} | "
                  f"{'yes' if r['ci95'][0] > 0 else 'no'} |" for r in p["reversed"]]
        lines += ["", f"Reversed pairs whose interval is above 0: {sum(r['ci95'][0] > 0 for r in p['reversed'])} of {len(p['reversed'])}."]
    if p["versus"]:
        lines += ["", "| a minus b | difference | per seed |", "|---|---|---|"]
        lines += [f"| {v['a']} minus {v['b']} | {_ci(v)} | {', '.join(f'{x:+.3f}' for x in v['per_seed'])} |" for v in p["versus"]]
    if p.get("baseline"):
        b = p["baseline"]
        lines += ["", f"Against the baseline {', '.join(b['runs'])} (settings that differ, baseline -> these runs: "
                  f"{describe_differs(b['differs'])}): "
                  "each condition minus the same condition there, paired by item and seed.", "",
                  "| condition | difference | per seed | items |", "|---|---|---|---|"]
        lines += [f"| {n} | {_ci(d)} | {', '.join(f'{x:+.3f}' for x in d['per_seed'])} | {d['items']} |"
                  for n, d in b["conditions"].items()]
    if p["spearman_delta_gain"] is not None:
        lines += ["", f"Spearman rank correlation of judged delta with pooled gain over {len(p['judged_delta'])} "
                  f"conditions: {p['spearman_delta_gain']:+.3f}."]
    if p["missing"]:
        lines += ["", f"Not in every seed, left out: {', '.join(p['missing'])}."]
    judged = list(p["judged_delta"])
    if len(judged) >= 2:
        label = short_labels({n: {"chosen": n.split(">")[0], "rejected": n.split(">")[-1]} for n in judged})
        scatter_with_ci([p["judged_delta"][n] for n in judged], [p["gain"][n]["mean"] for n in judged],
                        [None] * len(judged), [p["gain"][n]["ci95"] for n in judged], [label[n] for n in judged],
                        out / "gain_vs_delta.png", title=f"Gain against judged delta, {len(p['seeds'])} seed(s) pooled",
                        xlabel="judged delta, chosen - rejected", ylabel="gain over the student")
        lines += ["", "![gain against judged delta](gain_vs_delta.png)"]
    path = out / "pooled.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
