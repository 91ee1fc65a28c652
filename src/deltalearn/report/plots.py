"""PNG plots (matplotlib, headless). One function per figure; each returns the path it wrote."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def delta_histogram(deltas: list[float], path: str | Path, *, title: str, xlabel: str = "judged delta (chosen - rejected)") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.hist(deltas, bins=min(40, max(5, len(deltas) // 3)), color="#4c72b0", edgecolor="white")
    ax.axvline(0, color="#c44e52", lw=1.2, ls="--", label="no delta")
    if deltas:
        mean = sum(deltas) / len(deltas)
        ax.axvline(mean, color="black", lw=1.2, label=f"mean {mean:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.15)  # room for the labels at the edges
    return _save(plt, fig, path)


def _save(plt, fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def bar_with_ci(labels: list[str], means: list[float], cis: list[tuple[float, float]], path: str | Path, *,
                title: str, ylabel: str, baseline: float | None = None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(labels)), 3.8), dpi=120)
    err = [[m - lo for m, (lo, _) in zip(means, cis)], [hi - m for m, (_, hi) in zip(means, cis)]]
    ax.bar(labels, means, yerr=err, capsize=4, color="#4c72b0")
    if baseline is not None:
        ax.axhline(baseline, color="#c44e52", ls="--", lw=1, label="base")
        ax.legend(fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    return _save(plt, fig, path)


def scatter_with_ci(xs: list[float], ys: list[float], xcis: list, ycis: list, labels: list[str], path: str | Path, *,
                    title: str, xlabel: str, ylabel: str) -> Path:
    """Points with both intervals (a None interval draws no bar), each labelled; y = 0 marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=120)
    for x, y, xc, yc, label in zip(xs, ys, xcis, ycis, labels):
        xerr = [[x - xc[0]], [xc[1] - x]] if xc else None
        yerr = [[y - yc[0]], [yc[1] - y]] if yc else None
        ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color="#4c72b0", ecolor="#9bb0d6", capsize=3)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0, color="#c44e52", ls="--", lw=1, label="student (no training)")
    ax.axvline(0, color="grey", ls=":", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.15)  # room for the labels at the edges
    return _save(plt, fig, path)
