import numpy as np
import pytest

from deltalearn.studies.logreg.study import LogRegStudy, accuracy, make_world, run_logreg


def test_closed_form_accuracy_matches_monte_carlo():
    rng = np.random.default_rng(0)
    w_star, w_s, _, _ = make_world(30, 0.8, 0.6, 0.4, 0.5, rng)
    X = rng.standard_normal((200_000, 30))
    mc = np.mean(np.sign(X @ w_s) == np.sign(X @ w_star))
    assert accuracy(w_s, w_star) == pytest.approx(mc, abs=0.004)
    assert accuracy(w_s, w_star) == pytest.approx(1 - np.arccos(0.8) / np.pi, abs=1e-9)


def test_world_has_the_declared_geometry():
    w_star, w_s, w_a, w_b = make_world(500, 0.8, 0.6, 0.3, 0.9, np.random.default_rng(1))
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert [round(cos(w, w_star), 6) for w in (w_s, w_a, w_b)] == [0.8, 0.6, 0.3]
    e_a, e_b = w_a - 0.6 * w_star, w_b - 0.3 * w_star
    assert cos(e_a, e_b) == pytest.approx(0.9, abs=1e-6)


def test_study_runs_fast_and_shows_the_window_where_teacher_errors_are_shared(tmp_path):
    cfg = LogRegStudy(out_dir=str(tmp_path / "lr"), dims=[200], error_corrs=[0.0, 0.9], teacher_gaps=[0.3], seeds=3, steps=60)
    s = run_logreg(cfg)
    by_corr = {r["error_corr"]: r for r in s["rows"]}
    # with shared teacher errors, the delta points toward the truth early on, then teacher noise wins
    assert by_corr[0.9]["pref_best_gain"] > 0.005 and by_corr[0.9]["pref_peak_step"] > 0
    assert by_corr[0.9]["pref_best_gain"] > by_corr[0.0]["pref_best_gain"]
    assert by_corr[0.9]["pref_final_gain"] < by_corr[0.9]["pref_best_gain"]
    assert s["seconds"] < 60
    assert (tmp_path / "lr" / "accuracy_curves.png").stat().st_size > 1000 and "our own simulation" in (tmp_path / "lr" / "report.md").read_text()
