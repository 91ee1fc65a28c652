"""Pure statistics of a judged preference dataset: agreement, delta distribution, bootstrap CIs."""

from __future__ import annotations

import numpy as np

from ..metrics.stats import bootstrap_ci


def delta_summary(deltas, *, tie_tol: float = 0.0, seed: int = 0) -> dict:
    """Judged delta = score(chosen) - score(rejected), per pair.

    Agreement of the size heuristic with the judge is the share of pairs whose judged delta is
    positive (the judge also prefers the chosen answer); ties (|delta| <= tie_tol) and reversals
    (delta < -tie_tol) are reported separately, so agreement + ties + reversals = 1.
    """
    d = np.asarray([x for x in deltas if x is not None and np.isfinite(x)], dtype=float)
    n = int(d.size)
    if n == 0:
        return {"n": 0}
    agree = d > tie_tol
    tie = np.abs(d) <= tie_tol
    rev = d < -tie_tol
    q = np.quantile(d, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "n": n,
        "agreement": float(agree.mean()),
        "agreement_ci95": bootstrap_ci(agree.astype(float), seed=seed),
        "ties": float(tie.mean()),
        "reversals": float(rev.mean()),
        "mean_delta": float(d.mean()),
        "mean_delta_ci95": bootstrap_ci(d, seed=seed),
        "quantiles": {"p10": float(q[0]), "p25": float(q[1]), "p50": float(q[2]), "p75": float(q[3]), "p90": float(q[4])},
    }


def pairwise_agreement(verdicts) -> dict:
    """Verdicts from a pairwise judge: 'chosen', 'rejected', 'tie' or None (unparseable)."""
    v = list(verdicts)
    parsed = [x for x in v if x is not None]
    n = len(parsed)
    out = {"n": n, "unparseable": len(v) - n}
    if n:
        agree = np.array([x == "chosen" for x in parsed], dtype=float)
        out.update(agreement=float(agree.mean()), agreement_ci95=bootstrap_ci(agree),
                   ties=sum(x == "tie" for x in parsed) / n, reversals=sum(x == "rejected" for x in parsed) / n)
    return out


def by_category(categories, deltas, *, tie_tol: float = 0.0) -> dict:
    groups: dict[str, list] = {}
    for c, d in zip(categories, deltas):
        groups.setdefault(c or "(none)", []).append(d)
    return {c: {k: v for k, v in delta_summary(ds, tie_tol=tie_tol).items() if k in ("n", "agreement", "ties", "reversals", "mean_delta")}
            for c, ds in sorted(groups.items())}
