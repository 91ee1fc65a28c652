"""Study 5: weak teachers' delta in logistic regression. A simulation of OUR OWN design, written
because the paper's exact theorem was not available to us; it illustrates the claim, it is not the
paper's proof.

Setup. Inputs x ~ N(0, I_d); truth y* = sign(w*.x). A student w_s, and two teachers w_A (less bad)
and w_B (worse), all unit directions at cosines rho_s > rho_A > rho_B with w*. Each teacher's error
is a unit direction orthogonal to w*; the two teachers' errors have correlation `error_corr` (a
family of teachers shares mistakes). Teachers label a training sample: y_A = sign(w_A.x), y_B.

Updates from the student (gradient descent, full batch):
  pref  preference for A's label over B's: on points where the teachers disagree (y_B = -y_A), the
        DPO loss -log sigmoid(beta * [log p_w(y_A|x) - log p_w(y_B|x) - (same for the reference)])
        with p_w(y|x) = sigmoid(y w.x) and the reference = the starting student, which reduces to
        -log sigmoid(beta * y_A (w - w_s).x);
  sft   logistic regression on A's labels over every point;
  none  no update.
Metric: accuracy against the truth, exactly 1 - angle(w, w*)/pi for Gaussian inputs, and the
population logistic loss on a fresh sample. Several seeds give 95% bootstrap intervals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...errors import RecipeErrors

from ...metrics.stats import bootstrap_ci
from ...io import write_json_atomic, write_text_atomic
from ...rundir import RunDir

CURVES = "curves.json"  # the mean accuracy curve per setting and method, which the report plots


def accuracy(w: np.ndarray, w_star: np.ndarray) -> float:
    """P(sign(w.x) = sign(w*.x)) for x ~ N(0, I): one minus the angle over pi."""
    cos = float(w @ w_star / (np.linalg.norm(w) * np.linalg.norm(w_star)))
    return 1.0 - np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi


def _unit(v):
    return v / np.linalg.norm(v)


def make_world(d: int, rho_s: float, rho_a: float, rho_b: float, error_corr: float, rng):
    w_star = _unit(rng.standard_normal(d))

    def orth():
        v = rng.standard_normal(d)
        return _unit(v - (v @ w_star) * w_star)

    e_s, e_a, e_free = orth(), orth(), orth()
    e_free = _unit(e_free - (e_free @ e_a) * e_a)
    e_b = error_corr * e_a + np.sqrt(1 - error_corr**2) * e_free
    def mix(rho, e): return rho * w_star + np.sqrt(1 - rho**2) * e
    return w_star, mix(rho_s, e_s), mix(rho_a, e_a), mix(rho_b, e_b)


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def train_curves(method: str, X, y_a, y_b, w0, w_star, *, steps: int, lr: float, beta: float, X_pop, y_pop):
    w = w0.copy()
    acc, loss = [], []
    dis = y_a != y_b
    for t in range(steps + 1):
        acc.append(accuracy(w, w_star))
        if t % 10 == 0 or t == steps:  # the population loss is the costly part: every 10 steps
            loss.append(float(np.mean(np.logaddexp(0.0, -y_pop * (X_pop @ w)))))
        if t == steps or method == "none":
            continue
        if method == "pref":
            Xd, yd = X[dis], y_a[dis]
            if len(yd) == 0:
                continue
            margin = beta * yd * (Xd @ (w - w0))
            grad = -(beta * yd * _sigmoid(-margin)) @ Xd / len(X)  # averaged over all points, as a batch
        else:
            margin = y_a * (X @ w)
            grad = -(y_a * _sigmoid(-margin)) @ X / len(X)
        w = w - lr * grad
    if method == "none":
        acc, loss = [acc[0]] * len(acc), [loss[0]] * len(loss)
    return np.array(acc), np.array(loss)


class LogRegStudy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["logreg"] = Field(default="logreg", description="Recipe kind: logreg (the logistic-regression simulation).")
    name: str = Field(default="logreg", description="A label for the study (kept in results.json with the rest of the recipe).")
    out_dir: str = Field(default="runs/logreg", description="Directory for results.json, curves.json, the plot and report.md.")
    dims: list[Annotated[int, Field(ge=2)]] = Field(
        default_factory=lambda: [50, 200, 1000], min_length=1, description="Input dimensions d to simulate, each at least 2.")
    error_corrs: list[Annotated[float, Field(ge=-1, le=1)]] = Field(
        default_factory=lambda: [0.0, 0.5, 0.9], min_length=1,
        description="Correlations between the two teachers' error directions, each in [-1, 1].")
    teacher_gaps: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.1, 0.3], min_length=1,
        description="Gaps rho_A - rho_B between the teachers' cosines with the truth, each in (0, 1).")
    rho_student: float = Field(default=0.8, gt=-1, lt=1, description="The student's cosine with the true direction w*.")
    rho_teacher_a: float = Field(default=0.6, gt=-1, lt=1, description="Teacher A's cosine with w*; teacher B's is this minus each gap.")
    student_norm: float = Field(default=2.0, gt=0, description="Norm of the student's starting weight vector (its cosine with w* is rho_student).")
    n_train: int = Field(default=2000, ge=10, description="Training points the teachers label.")
    n_pop: int = Field(default=10000, ge=10, description="Fresh points on which the population logistic loss is measured.")
    steps: int = Field(default=150, ge=1, description="Full-batch gradient-descent steps per run.")
    lr: float = Field(default=0.5, gt=0, description="Gradient-descent step size.")
    beta: float = Field(default=1.0, gt=0, description="beta of the preference (DPO) update.")
    seeds: int = Field(default=5, ge=2, description="Seeds per setting; intervals over seeds need two or more.")

    @model_validator(mode="after")
    def _teacher_b_exists(self) -> "LogRegStudy":
        bad = [(f"teacher_gaps.{i}", f"rho_teacher_a - gap = {self.rho_teacher_a - g:.2f} is not a cosine in (-1, 1)")
               for i, g in enumerate(self.teacher_gaps) if not -1 < self.rho_teacher_a - g < 1]
        if bad:
            raise RecipeErrors(bad)
        return self


def run_logreg(cfg: LogRegStudy, *, console=None) -> dict:
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    rows, curves = [], {}
    for d in cfg.dims:
        for corr in cfg.error_corrs:
            for gap in cfg.teacher_gaps:
                per_method = {m: [] for m in ("pref", "sft", "none")}
                for seed in range(cfg.seeds):
                    rng = np.random.default_rng(seed * 7919 + d)
                    w_star, w_s, w_a, w_b = make_world(d, cfg.rho_student, cfg.rho_teacher_a, cfg.rho_teacher_a - gap, corr, rng)
                    X = rng.standard_normal((cfg.n_train, d))
                    X_pop = rng.standard_normal((cfg.n_pop, d))
                    y_a, y_b, y_pop = np.sign(X @ w_a), np.sign(X @ w_b), np.sign(X_pop @ w_star)
                    for m in per_method:
                        per_method[m].append(train_curves(m, X, y_a, y_b, cfg.student_norm * w_s, w_star, steps=cfg.steps,
                                                          lr=cfg.lr, beta=cfg.beta, X_pop=X_pop, y_pop=y_pop))
                key = f"d={d} corr={corr} gap={gap}"
                curves[key] = {m: np.mean([c[0] for c in v], axis=0).tolist() for m, v in per_method.items()}
                row = {"d": d, "error_corr": corr, "gap": gap, "student_acc": float(np.mean([c[0][0] for c in per_method["none"]]))}
                for m in ("pref", "sft"):
                    gains = [c[0].max() - c[0][0] for c in per_method[m]]
                    finals = [c[0][-1] - c[0][0] for c in per_method[m]]
                    peak = [int(np.argmax(c[0])) for c in per_method[m]]
                    row[f"{m}_best_gain"] = float(np.mean(gains))
                    row[f"{m}_best_gain_ci95"] = bootstrap_ci(gains)
                    row[f"{m}_final_gain"] = float(np.mean(finals))
                    row[f"{m}_final_gain_ci95"] = bootstrap_ci(finals)
                    row[f"{m}_peak_step"] = float(np.median(peak))
                    row[f"{m}_final_pop_loss"] = float(np.mean([c[1][-1] for c in per_method[m]]))
                row["none_pop_loss"] = float(np.mean([c[1][0] for c in per_method["none"]]))
                rows.append(row)
    summary = {"study": "logreg", "rows": rows, "seconds": round(time.perf_counter() - t0, 1), "config": cfg.model_dump()}
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.results, summary)
    write_text_atomic(run.extra(CURVES), json.dumps(curves))
    logreg_report(run.root)
    return summary


def logreg_report(run_dir: str | Path) -> Path:
    from ...report.plots import _plt

    run = RunDir(run_dir)
    s = run.read_results()
    curves = json.loads(run.extra(CURVES).read_text())
    cfg = s["config"]
    plt = _plt()
    keys = [k for k in curves if f"gap={cfg['teacher_gaps'][-1]}" in k and f"d={cfg['dims'][-1]}" in k]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), dpi=110, squeeze=False)
    for ax, k in zip(axes[0], keys):
        for m, style in (("pref", "-"), ("sft", "--"), ("none", ":")):
            ax.plot(curves[k][m], style, label={"pref": "prefer A over B", "sft": "SFT on A", "none": "no update"}[m])
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("accuracy vs truth")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run.plot("accuracy_curves"))
    plt.close(fig)
    lines = ["# Logistic-regression delta study (our own simulation, not the paper's theorem)", "",
             f"Student at cosine {cfg['rho_student']} with the truth, teacher A at {cfg['rho_teacher_a']}, teacher B at "
             f"{cfg['rho_teacher_a']} - gap; {cfg['seeds']} seeds, {cfg['n_train']} training points, {cfg['steps']} steps, lr "
             f"{cfg['lr']}. Gains are accuracy changes against the truth (best over steps, and at the last step), mean "
             "(95% bootstrap CI over seeds). Method and caveats: the docstring of `studies/logreg/study.py`.", "",
             "| d | teacher error corr | gap | student acc | prefer A>B: best gain | at step | final gain | SFT on A: best gain | final gain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        def g(k): return f"{r[k]:+.4f} ({r[k + '_ci95'][0]:+.4f}..{r[k + '_ci95'][1]:+.4f})"
        lines.append(f"| {r['d']} | {r['error_corr']} | {r['gap']} | {r['student_acc']:.4f} | {g('pref_best_gain')} | "
                     f"{r['pref_peak_step']:.0f} | {g('pref_final_gain')} | {g('sft_best_gain')} | {g('sft_final_gain')} |")
    lines += ["", "![accuracy curves](accuracy_curves.png)", "", f"Wall time: {s['seconds']} s.", ""]
    path = run.report
    write_text_atomic(path, "\n".join(lines))
    return path


def summary(cfg, s: dict) -> list:
    """What `deltalearn run` prints after the logistic-regression study."""
    from rich.table import Table

    t = Table(title="logistic regression: accuracy gain over the student (best over steps / final)")
    for c in ("d", "error corr", "gap", "student acc", "prefer A>B best", "at step", "prefer final", "SFT on A best", "SFT final"):
        t.add_column(c, justify="right")
    for r in s["rows"]:
        t.add_row(str(r["d"]), str(r["error_corr"]), str(r["gap"]), f"{r['student_acc']:.4f}", f"{r['pref_best_gain']:+.4f}",
                  f"{r['pref_peak_step']:.0f}", f"{r['pref_final_gain']:+.4f}", f"{r['sft_best_gain']:+.4f}", f"{r['sft_final_gain']:+.4f}")
    return [t, f"wrote {cfg.out_dir}/report.md and accuracy_curves.png in {s['seconds']:.0f} s"]
