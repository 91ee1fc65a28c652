"""Bootstrap intervals and paired gains: pure functions of numbers."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, stat=np.mean, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of `stat` over `values` (NaN-free 1-d data)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.apply_along_axis(stat, 1, x[idx]) if stat is not np.mean else x[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_gain(diffs: dict[str, list[float]], signs: dict[str, float], *, seed: int = 0, n_boot: int = 2000) -> dict:
    """Mean over metrics of each metric's mean paired difference (signed so that positive is better),
    with a 95% bootstrap interval resampling the items of every metric independently."""
    if not diffs or any(not v for v in diffs.values()):
        return {"mean": float("nan"), "ci95": (float("nan"), float("nan"))}
    rng = np.random.default_rng(seed)
    arrays = [signs[m] * np.asarray(v, dtype=float) for m, v in diffs.items()]
    point = float(np.mean([a.mean() for a in arrays]))
    boots = np.mean([a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1) for a in arrays], axis=0)
    return {"mean": point, "ci95": (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))}


def _ranks(x) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation (Pearson's on average ranks); NaN when either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
