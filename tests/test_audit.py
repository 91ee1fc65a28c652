import json

import numpy as np
import pytest
import torch

from deltalearn.audit.cost import cost_report
from deltalearn.audit.judges import (PairwiseJudge, RewardModelJudge, RubricJudge, UtilityJudge, combine_orders,
                                     parse_pairwise, parse_rubric)
from deltalearn.audit.run import audit_pairs
from deltalearn.audit.stats import delta_summary, pairwise_agreement
from deltalearn.metrics.stats import bootstrap_ci
from deltalearn.metrics.text import bold_sections
from deltalearn.generate.base import Completion
from deltalearn.io import read_jsonl
from conftest import write_jsonl


def test_delta_summary_hand_computed():
    s = delta_summary([2.0, -1.0, 0.0, 3.0, None])
    assert s["n"] == 4 and s["agreement"] == 0.5 and s["ties"] == 0.25 and s["reversals"] == 0.25
    assert s["mean_delta"] == 1.0 and s["quantiles"]["p50"] == 1.0
    lo, hi = s["mean_delta_ci95"]
    assert -1.0 <= lo <= 1.0 <= hi <= 3.0
    s = delta_summary([0.5, -0.5, 2.0], tie_tol=0.5)
    assert (s["agreement"], s["ties"], s["reversals"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 0.0)
    assert bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)


def test_bootstrap_ci_covers_the_mean_of_a_known_distribution():
    x = np.random.default_rng(1).normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x)
    # standard error 0.1: the 95% interval is about +-0.2 around the sample mean
    assert lo < x.mean() < hi and 0.3 < hi - lo < 0.5


def test_bold_sections_counts_header_lines_only():
    text = "**Intro**\nSome text with **inline bold**.\n## **Setup:**\n- **not a header** item\n**Done**"
    assert bold_sections(text) == 3


def test_rubric_parsing():
    assert parse_rubric("Helpfulness: 8\nHonesty: 6\nInstruction following: 10\nTruthfulness: 4") == 7.0
    assert parse_rubric("Helpfulness: 8\nHonesty: 6\nTruthfulness: 4") is None  # an aspect missing
    assert parse_rubric("Helpfulness: 11\nHonesty: 6\nInstruction following: 1\nTruthfulness: 4") is None
    assert parse_pairwise("I pick [[B]].") == "B" and parse_pairwise("[[A]] or [[B]]") is None and parse_pairwise("A") is None


class ContentJudgeBackend:
    """Prefers the answer containing GOOD, wherever it is shown; `biased` always answers A."""

    size = 1000

    def __init__(self, biased=False, garbage=False):
        self.biased, self.garbage = biased, garbage

    def generate(self, convs, settings):
        outs = []
        for c in convs:
            text = c[0]["content"]
            if self.garbage:
                outs.append(Completion("I cannot decide", 3, "stop"))
                continue
            if self.biased:
                outs.append(Completion("[[A]]", 3, "stop"))
                continue
            a = text.split("[Answer A]")[1].split("[Answer B]")[0]
            outs.append(Completion("[[A]]" if "GOOD" in a else "[[B]]", 3, "stop"))
        return outs


def test_pairwise_verdict_decides_the_label_in_both_orders():
    items = [("q1", "GOOD answer", "bad answer"), ("q2", "bad answer", "GOOD answer")]
    judge = PairwiseJudge(ContentJudgeBackend())
    assert judge.compare(items) == ["chosen", "rejected"]
    # each order was really asked, and the content (not the slot) decided both
    assert judge.raw == [("[[A]]", "[[B]]"), ("[[B]]", "[[A]]")]
    assert PairwiseJudge(ContentJudgeBackend(biased=True)).compare(items) == ["tie", "tie"]
    assert PairwiseJudge(ContentJudgeBackend(garbage=True)).compare(items) == [None, None]
    assert combine_orders("A", "B") == "chosen" and combine_orders("B", "A") == "rejected"
    assert combine_orders("C", "C") == "tie" and combine_orders("A", None) is None
    s = pairwise_agreement(["chosen", "chosen", "rejected", "tie", None])
    assert s["n"] == 4 and s["unparseable"] == 1 and s["agreement"] == 0.5 and s["reversals"] == 0.25


def test_rubric_judge_through_a_backend():
    class Fixed:
        size = 10

        def generate(self, convs, settings):
            return [Completion("Helpfulness: 9\nHonesty: 9\nInstruction following: 9\nTruthfulness: 9" if "GOOD" in c[0]["content"]
                               else "no idea", 5, "stop") for c in convs]

    assert RubricJudge(Fixed()).score([("q", "GOOD"), ("q", "meh")]) == [9.0, None]


def test_reward_model_judge_scores_a_known_feature(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification
    from conftest import build_tokenizer

    tok = build_tokenizer(tmp_path)
    (tmp_path / "chat_template.jinja").unlink()  # plain "prompt\n\nanswer" text: the last token is the answer's

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    model = LlamaForSequenceClassification(cfg)
    bang = tok.convert_tokens_to_ids("!")
    with torch.no_grad():  # layers add nothing, so the score sees only the last token's embedding
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[bang] = 1.0
        model.score.weight.fill_(1.0)
    model.save_pretrained(tmp_path)
    judge = RewardModelJudge(str(tmp_path))
    good, plain, good2 = judge.score([("q", "great answer!"), ("q", "plain answer"), ("another q", "yes!")])
    assert good == pytest.approx(16.0, rel=1e-3) and good2 == pytest.approx(16.0, rel=1e-3) and abs(plain) < 1e-3


def bold(n, tag):
    return "\n".join(f"**Part {i}**\ntext {tag}" for i in range(n))


def test_audit_end_to_end_with_filter_relabel_and_plot(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": bold(3, i), "rejected": bold(1, i), "prompt_id": f"p{i}", "category": "a" if i % 2 else "b",
             "chosen_tier": "big", "rejected_tier": "small", "chosen_size": 10, "rejected_size": 5} for i in range(8)]
    rows[0]["chosen"], rows[0]["rejected"] = rows[0]["rejected"], rows[0]["chosen"]  # the heuristic is wrong here
    rows[1]["rejected"] = bold(3, "x")  # a tie
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    judge = UtilityJudge("bold_sections", bold_sections)
    s = audit_pairs(path, judge, n=None, out_dir=tmp_path / "audit", min_delta=2, relabel=True)
    assert (s["n"], s["agreement"], s["ties"], s["reversals"]) == (8, 0.75, 0.125, 0.125)
    assert s["filtered"]["kept"] == 6 and len(read_jsonl(tmp_path / "audit" / "filtered.jsonl")) == 6
    rel = read_jsonl(tmp_path / "audit" / "relabelled.jsonl")
    assert s["relabelled"] == s["relabelled"] | {"kept": 6, "swapped": 1, "tie_dropped": 1}
    swapped = next(r for r in rel if r["prompt_id"] == "p0")
    assert bold_sections(swapped["chosen"]) == 3 and swapped["chosen_tier"] == "small" and swapped["chosen_size"] == 5
    assert swapped["label_source"] == "judge:bold_sections"
    assert (tmp_path / "audit" / "delta_hist.png").stat().st_size > 1000
    assert set(s["by_category"]) == {"a", "b"}
    sampled = audit_pairs(path, judge, n=3, seed=7, out_dir=tmp_path / "a2")
    assert sampled["sampled"] == 3 and sampled == audit_pairs(path, judge, n=3, seed=7, out_dir=tmp_path / "a2") | {"seconds": sampled["seconds"]}


def test_cost_report_hand_computed():
    gen = [{"tier": "3b", "size": 3_000_000_000, "new_tokens": 1000, "seconds": 2.0},
           {"tier": "1.5b", "size": 1_500_000_000, "new_tokens": 1000, "seconds": 1.0}]
    r = cost_report(gen, None, {"name": "pool of 4 x 70B", "params": 70_000_000_000, "models": 4})
    assert r["total_flops"] == 2 * 3e9 * 1000 + 2 * 1.5e9 * 1000
    assert r["reference"]["flops"] == 4 * 2 * 70e9 * 1000
    assert r["ratio_to_reference"] == pytest.approx(9e12 / 5.6e14)


def test_audit_command(tmp_path):
    from typer.testing import CliRunner

    from deltalearn.cli import app

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": "a long answer here " * 3}],
             "rejected": [{"role": "assistant", "content": "short"}], "category": "c"} for i in range(5)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    res = CliRunner().invoke(app, ["audit", str(path), "--judge", "length_words", "--n", "4", "--relabel"])
    assert res.exit_code == 0, res.output
    assert "100.0%" in res.output and "relabelled: kept 4" in res.output
    assert "mean score: chosen 12.000, rejected 1.000" in res.output
    out = tmp_path / "pairs.audit-length_words"
    assert json.loads((out / "summary.json").read_text())["sampled"] == 4
    res = CliRunner().invoke(app, ["audit", str(path), "--judge", "nonsense"])
    assert res.exit_code != 0


def test_verifiable_instruction_judge():
    from deltalearn.audit.factory import make_judge
    from deltalearn.errors import DeltaError

    j = make_judge('ifcheck:{"check": "max_words", "n": 3}')
    assert j.score([("q", "one two"), ("q", "one two three four")]) == [1.0, 0.0]
    with pytest.raises(DeltaError, match="expected ifcheck"):
        make_judge('ifcheck:{"check": "nope"}')


def test_asserts_judge_runs_each_answer_against_its_prompts_asserts(tmp_path):
    from deltalearn.audit.factory import make_judge

    prompt = "Write a function.\nWrite it as a Python function that passes this test:\nassert add(2, 3) == 5\nReply in one block."
    good = "```python\ndef add(a, b):\n    return a + b\n```\nIt adds."
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    echo = prompt + "\n" + prompt  # a base model repeating the prompt: not code
    j = make_judge("asserts")
    assert j.score([(prompt, good), (prompt, wrong), (prompt, echo), ("no asserts stated", good)]) == [1.0, 0.0, 0.0, None]
    rows = [{"prompt": prompt, "chosen": c, "rejected": r, "prompt_id": f"p{i}"}
            for i, (c, r) in enumerate([(good, echo), (good, wrong), (wrong, echo), (wrong, good)])]
    s = audit_pairs(write_jsonl(tmp_path / "pairs.jsonl", rows), j, n=None, out_dir=tmp_path / "audit")
    assert (s["agreement"], s["ties"], s["reversals"]) == (0.5, 0.25, 0.25)
    assert s["mean_score"] == {"chosen": 0.5, "rejected": 0.25} and s["mean_delta"] == pytest.approx(0.25)
