import pytest

from deltalearn.metrics.text import bold_sections
from deltalearn.studies.bold.sections import strip_bold, with_k_sections

ANSWERS = [
    "1. **Set Clear Goals**: Before starting, set goals. This helps you focus.\n\n2. **Create a Schedule**: Study at the same time. Take breaks.",
    "The capital of France is Paris.",
    "Photosynthesis turns light into chemical energy. Plants use it to grow. It also releases oxygen! Isn't that neat? Yes.",
    "**Intro**\nBees see ultraviolet light.\n**Dance**\nThey dance to share where food is. The angle gives the direction.",
]


@pytest.mark.parametrize("text", ANSWERS)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_exactly_k_sections_and_the_words_are_kept(text, k):
    for variant in (0, 1):
        out = with_k_sections(text, k, variant)
        assert bold_sections(out) == k
        body = [l for l in out.splitlines() if l.strip() and not l.startswith("**")]
        assert " ".join(" ".join(body).split()) == " ".join(strip_bold(text).split())
        assert with_k_sections(text, k, variant) == out  # deterministic


def test_two_different_three_section_versions_for_the_zero_delta_control():
    text = ANSWERS[2]
    a, b = with_k_sections(text, 3, 0), with_k_sections(text, 3, 1)
    assert a != b and bold_sections(a) == bold_sections(b) == 3


def test_too_short_answers_are_refused():
    with pytest.raises(ValueError, match="cannot hold 5 sections"):
        with_k_sections("Yes.", 5)


def test_bold_study_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir):
    import json

    from deltalearn.studies.bold.study import BoldStudy, run_bold
    from deltalearn.studies.bold.report import bold_report

    cfg = BoldStudy.model_validate({
        "out_dir": str(tmp_path / "run"), "student": {"name": "tiny", "model": str(tiny_model_dir)},
        "train_limit": 8, "test_limit": 3, "answer_max_new_tokens": 24, "eval_max_new_tokens": 8, "batch_size": 4,
        "warmup": {"method": "sft", "lr": 1e-3, "global_batch_size": 4, "max_length": 128},
        "dpo": {"lr": 1e-3, "global_batch_size": 4, "max_length": 128},
        "sft": {"method": "sft", "lr": 1e-3, "global_batch_size": 4, "max_length": 128},
        "conditions": ["sft2", "dpo_3_over_2", "dpo_3_over_3"],
    })
    s = run_bold(cfg)
    assert list(s["results"]) == ["base", "sft2", "dpo_3_over_2", "dpo_3_over_3"]
    assert s["results"]["base"]["heldout"]["bold_sections"]["mean"] >= 0  # the SciQ set, on every model
    assert set(s["differences"]) == {"sft2", "dpo_3_over_2", "dpo_3_over_3", "delta_effect"}
    assert s["differences"]["delta_effect"]["heldout"]["bold_sections"]["n"] == 48
    run = tmp_path / "run"
    rows = [json.loads(l) for l in (run / "data" / "dpo_3_over_3.jsonl").read_text().splitlines()]
    assert rows and all(r["chosen"] != r["rejected"] for r in rows)
    assert all(bold_sections(r["chosen"][0]["content"]) == bold_sections(r["rejected"][0]["content"]) == 3 for r in rows)
    assert (run / "bold_sections.png").stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "DPO 3 > 2" in report and "The paper's pattern, checked" in report
    (run / "report.md").unlink()
    bold_report(run)  # rebuilt from results.json alone
    assert (run / "report.md").read_text() == report


def _summary(diff_32, diff_33, words=(80, 70)):
    stat = lambda m: {"mean": m, "ci95": [m - 0.5, m + 0.5]}
    res = {"base": {"bold_sections": stat(2.0), "length_words": stat(words[0]), "heldout": None},
           "dpo_3_over_2": {"bold_sections": stat(2.0 + diff_32[0]), "length_words": stat(words[1]), "heldout": None},
           "dpo_3_over_3": {"bold_sections": stat(2.0 + diff_33[0]), "length_words": stat(words[0]), "heldout": None}}
    d = lambda m, lo, hi: {"test": {"bold_sections": {"mean": m, "ci95": [lo, hi], "n": 32}}}
    return {"results": res, "differences": {"dpo_3_over_2": d(*diff_32), "dpo_3_over_3": d(*diff_33),
                                            "delta_effect": d(diff_32[0] - diff_33[0], 0.1, 1.0)}}


def test_the_pattern_is_decided_by_the_paired_intervals_not_the_means():
    from deltalearn.studies.bold.report import amplifies, shape_checks

    s = _summary((1.0, 0.4, 1.6), (0.2, -0.3, 0.6))
    c = shape_checks(s)
    assert c["DPO 3>2 above base (test prompts; paired 95% CI above 0)"][0] is True
    assert c["DPO 3>3 within noise of base (test prompts; paired CI contains 0)"][0] is True
    assert amplifies(s) is True
    s = _summary((1.0, -0.1, 2.1), (0.2, -0.3, 0.6))  # the same mean, an interval that reaches below zero
    assert shape_checks(s)["DPO 3>2 above base (test prompts; paired 95% CI above 0)"][0] is False and amplifies(s) is False
    s = _summary((1.0, 0.4, 1.6), (0.2, -0.3, 0.6), words=(80, 50))  # amplified by much shorter answers: not a pass
    assert amplifies(s) is False
