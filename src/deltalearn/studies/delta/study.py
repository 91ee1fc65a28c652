"""Studies 2-4 of the paper as one recipe kind, `kind: delta`: weak-vs-weaker, self-vs-smaller and
the model-ladder grid differ only in which tiers' answers each condition pairs.

prompts -> each needed ladder tier answers them (one resumable cache per tier) -> one preference
dataset per condition -> its delta judged before training (audit) -> each condition trained from the
student -> the same offline suites on the student and on every trained model -> paired differences
to the student with 95% intervals, a gain per condition, report.md and plots.
"""

from __future__ import annotations

import time
from itertools import permutations
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...config import BOOKKEEPING

from ...errors import RecipeErrors
from ...generate.base import GenerationSettings
from ...generate.prompts import PromptsConfig
from ...generate.run import GenerateConfig
from ... import faults, record
from ...io import has_weights, write_json_atomic
from ...metrics.stats import paired_gain
from ...models.ladder import Ladder, default_ladder
from ...models.spec import EMBEDDED, TierSpec
from ...pairs.filters import FilterConfig
from ..common import Stage, TrainOverrides, claim_study, finish_study, train_stage
from . import STUDY
from .plan import PlanSettings

from ...train.methods import MethodName as Method
from ...rundir import DATA, STUDENT, RunDir, has_summary, read_summary, suite_items


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="The condition's name, unique, not `base`; `>` becomes `_over_` in its folder names.")
    method: Method = Field(default="dpo_norm", description="Loss: dpo_norm, dpo, ipo, simpo or sft (sft trains from the `sft` stage).")
    chosen: str = Field(description="The ladder tier whose answers are chosen.")
    rejected: str | None = Field(
        default=None, description="The ladder tier whose answers are rejected; sft may leave it out (it trains on chosen only).")
    train: TrainOverrides = Field(
        default_factory=TrainOverrides, description="This condition's own train keys (e.g. lr, beta, dtype) over the `dpo` or `sft` stage's.")

    @property
    def run_name(self) -> str:
        """Its folder name under pairs/, audit/, models/ and eval/ (grid names hold `>`)."""
        return self.name.replace(">", "_over_")

    @model_validator(mode="after")
    def _needs_rejected(self) -> "Condition":
        if self.method != "sft" and self.rejected is None:
            raise ValueError(f"condition {self.name!r}: method {self.method} needs `rejected`")
        return self


class Grid(BaseModel):
    """Every ordered pair of `tiers` (3 tiers: 6 datasets; 7 tiers: the paper's 21, or 42 with both
    directions). The grid's size is the number of tiers named here."""

    model_config = ConfigDict(extra="forbid")
    tiers: list[str] | None = Field(default=None, description="Tiers whose ordered pairs become conditions; null = the whole ladder.")
    method: Method = Field(default="dpo_norm", description="Loss of every grid condition: dpo_norm, dpo, ipo, simpo or sft.")
    directions: Literal["both", "bigger_chosen"] = Field(
        default="both", description="both (each pair both ways) or bigger_chosen (only the tier listed earlier in the ladder chosen).")


class AuditStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    judge: str = Field(default="loglik", description="Any judge of `deltalearn audit` (loglik, llm-rubric, regex:PATTERN, ...).")
    judge_model: str | None = Field(
        default=None, description="The judge's model: a local model, or the endpoint's model name; null = the student (loglik).")
    n: int | None = Field(default=None, gt=0, description="Pairs judged per dataset, a sample; null = all.")
    endpoint: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible endpoint for an LLM judge; null = run the judge locally.")

    @model_validator(mode="after")
    def _judge_known(self) -> "AuditStage":
        from ...audit.factory import judge_problem

        problem = judge_problem(self.judge, self.judge_model, self.endpoint, model_supplied=self.judge == "loglik")
        if problem:
            raise RecipeErrors([("judge", problem)])
        return self


class EvalStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suites: list[str] = Field(default_factory=lambda: ["mc_lite", "ifeval_lite", "overrefusal", "harmful_refusal"],
                              description="Offline suites scored on the student and on every trained model.", json_schema_extra=BOOKKEEPING)
    limit: int | None = Field(default=40, gt=0, description="Items per suite (its first ones); null = every item.")
    limits: dict[str, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict, description="Items per suite for the suites named here, over `limit`.")
    max_new_tokens: int | None = Field(default=128, gt=0, description="Token budget of generated answers; null = each suite's own.")
    batch_size: int = Field(default=16, ge=1, description="Items per batch in evaluation.", json_schema_extra=BOOKKEEPING)
    # The gain of a condition: the mean over these metrics of its paired difference to the student,
    # each signed so that positive is better (the paper's "average over benchmarks").
    gain: list[str] = Field(default_factory=lambda: ["mc_lite.acc_norm", "ifeval_lite.instruction_strict"],
                            description="suite.metric names whose signed paired differences to the student average to the gain.", json_schema_extra=BOOKKEEPING)

    @model_validator(mode="after")
    def _suites_and_gain(self) -> "EvalStage":
        from ...evaluate.suites import gain_problem, suite_problem

        errors = [(f"suites.{i}", suite_problem(n)) for i, n in enumerate(self.suites) if suite_problem(n)]
        errors += [(f"limits.{n}", f"suite {n!r} is not among the study's suites") for n in self.limits if n not in self.suites]
        errors += [(f"gain.{i}", gain_problem(g, self.suites)) for i, g in enumerate(self.gain) if gain_problem(g, self.suites)]
        if errors:
            raise RecipeErrors(errors)
        return self


class DeltaStudy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["delta"] = Field(default="delta", description="Recipe kind: delta (conditions pairing ladder tiers' answers).")
    name: str = Field(default="delta", description="The study's name, shown in report.md and in the CLI's tables.", json_schema_extra=BOOKKEEPING)
    description: str = Field(default="", description="What the study tests and what it does not reproduce; printed in report.md.", json_schema_extra=BOOKKEEPING)
    out_dir: str = Field(default="runs/delta", description="The study's run directory: pairs, audit, models, eval, results and report.", json_schema_extra=BOOKKEEPING)
    answers_dir: str | None = Field(
        default=None, description="Where tiers' answers are cached, to share them between studies; null = out_dir.", json_schema_extra=BOOKKEEPING)
    student: TierSpec = Field(default_factory=lambda: TierSpec(name="smollm2-135m", model=EMBEDDED),
                              description="The model every condition trains from, and the baseline of every comparison.")
    ladder: Ladder = Field(default_factory=default_ladder, description="The tiers whose answers conditions pair, or `default`.")
    prompts: PromptsConfig = Field(default_factory=lambda: PromptsConfig(split="train", limit=64),
                                   description="The prompts the tiers answer: the training pairs' prompts.")
    generate: GenerateConfig = Field(default_factory=lambda: GenerateConfig(
        batch_size=16, settings=GenerationSettings(max_new_tokens=128)),
        description="How the tiers answer (backend, batch, decoding); its engine settings also serve eval.")
    # Answers cut by the token limit are kept: at CPU lengths most long answers are cut.
    filters: FilterConfig = Field(default_factory=lambda: FilterConfig(drop_truncated=False),
                                  description="Which pairs are dropped from each condition's dataset.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions named one by one.", json_schema_extra=BOOKKEEPING)
    grid: Grid | None = Field(default=None, description="Conditions for ordered pairs of tiers, added to `conditions`; null = none.", json_schema_extra=BOOKKEEPING)
    audit: AuditStage | None = Field(
        default_factory=AuditStage, description="Judge each dataset's delta before training; null = no audit.")
    eval: EvalStage = Field(default_factory=EvalStage, description="What is scored on the student and on each trained model.")
    plan: PlanSettings | None = Field(
        default=None, description="The dry run's assumptions (GPU, throughput, token counts); null = measured where it runs.", json_schema_extra=BOOKKEEPING)
    dpo: Stage = Field(default_factory=lambda: Stage(lr=5e-5), description="Training settings of the preference conditions.")
    sft: Stage = Field(default_factory=lambda: Stage(method="sft", lr=2e-5), description="Training settings of the sft conditions.")
    seed: int = Field(default=42, description="Seed of training, audit sampling, evaluation and the bootstrap intervals.")
    # A run directory made with other settings: refuse (default), or rerun what they change.
    on_change: Literal["refuse", "rerun"] = Field(
        default="refuse", description="out_dir holds a run made with other settings: refuse, or rerun what they change.", json_schema_extra=BOOKKEEPING)

    @field_validator("ladder", mode="before")
    @classmethod
    def _named_ladder(cls, v):
        return default_ladder() if v == "default" else v

    @model_validator(mode="wrap")
    @classmethod
    def _all_errors(cls, data, handler):
        """Field errors stop pydantic before the cross-field checks below; run the tier-name checks on
        the raw recipe too, so one load reports every problem."""
        from pydantic import ValidationError

        from ...config import error_list

        try:
            return handler(data)
        except ValidationError as e:
            found = error_list(e)
            extra = [x for x in _raw_tier_errors(data) if x not in found]
            raise RecipeErrors(found + extra) from None

    @model_validator(mode="after")
    def _check(self) -> "DeltaStudy":
        names = self.ladder.names
        errors = []
        for i, c in enumerate(self.conditions):
            for key in ("chosen", "rejected"):
                t = getattr(c, key)
                if t is not None and t not in names:
                    errors.append((f"conditions.{i}.{key}", f"unknown tier {t!r} (ladder has: {', '.join(names)})"))
            try:
                self.stage_for(c)
            except ValueError as e:
                from pydantic import ValidationError

                from ...config import error_list

                found = error_list(e) if isinstance(e, ValidationError) else [("", str(e))]
                errors += [(f"conditions.{i}.train" + (f".{k}" if k else ""), m) for k, m in found]
        for i, t in enumerate((self.grid.tiers or []) if self.grid else []):
            if t not in names:
                errors.append((f"grid.tiers.{i}", f"unknown tier {t!r} (ladder has: {', '.join(names)})"))
        if not self.conditions and self.grid is None:
            errors.append(("", "a delta study needs `conditions`, a `grid`, or both"))
        if not errors:
            seen = [c.name for c in self.all_conditions()]
            if len(set(seen)) != len(seen) or "base" in seen:
                errors.append(("conditions", f"condition names must be unique and not 'base': {seen}"))
        if errors:
            raise RecipeErrors(errors)
        return self

    def problems(self) -> list[tuple[str, str]]:
        """Missing files (prompts, the student's and each needed tier's model), before anything loads."""
        from ...models.loading import source_problems

        out = [(f"prompts.{k}", m) for k, m in self.prompts.problems()]
        out += [("student.model", m) for m in source_problems(self.student)]
        needed = {t.name for t in self.needed_tiers()}
        out += [(f"ladder.tiers.{i}.model", m) for i, t in enumerate(self.ladder.tiers) if t.name in needed
                for m in source_problems(t)]
        return out

    def stage_for(self, c: Condition) -> Stage:
        base = self.sft if c.method == "sft" else self.dpo
        return base.with_overrides(c.train, c.method)

    def needed_tiers(self) -> list[TierSpec]:
        """The ladder tiers some condition pairs, in ladder order: only these generate answers."""
        names = {t for c in self.all_conditions() for t in (c.chosen, c.rejected) if t}
        return [t for t in self.ladder.tiers if t.name in names]

    def all_conditions(self) -> list[Condition]:
        return self.conditions + expand_grid(self.grid, self.ladder) if self.grid else list(self.conditions)


def _raw_tier_errors(data) -> list[tuple[str, str]]:
    """Unknown tier names in a recipe that failed field validation (best effort on the raw mapping)."""
    if not isinstance(data, dict):
        return []
    ladder = data.get("ladder")
    if ladder in (None, "default"):
        names = default_ladder().names
    elif isinstance(ladder, dict) and isinstance(ladder.get("tiers"), list):
        names = [t.get("name") for t in ladder["tiers"] if isinstance(t, dict)]
    else:
        return []
    errors = []
    for i, c in enumerate(data.get("conditions") or []):
        for key in ("chosen", "rejected"):
            t = c.get(key) if isinstance(c, dict) else None
            if isinstance(t, str) and t not in names:
                errors.append((f"conditions.{i}.{key}", f"unknown tier {t!r} (ladder has: {', '.join(map(str, names))})"))
    return errors


def expand_grid(grid: Grid, ladder: Ladder) -> list[Condition]:
    """Ordered tier pairs in ladder order (the ladder lists the strongest first)."""
    tiers = grid.tiers or ladder.names
    rank = {n: i for i, n in enumerate(ladder.names)}
    pairs = [(a, b) for a, b in permutations(tiers, 2) if grid.directions == "both" or rank[a] < rank[b]]
    return [Condition(name=f"{a}>{b}", method=grid.method, chosen=a, rejected=b) for a, b in pairs]


def _pairs(cond: Condition, generations: dict, filters: FilterConfig, run: RunDir) -> tuple[Path, dict]:
    from ...pairs.dataset import build_pairs, write_pairs
    from ...pairs.strategies import PairSpec

    if cond.rejected is None:  # SFT on one tier's answers: the rejected column repeats chosen and is never read
        rows, summary = build_pairs(PairSpec(cond.chosen, cond.chosen), generations, filters.model_copy(update={"drop_identical": False}))
    else:
        rows, summary = build_pairs(PairSpec(cond.chosen, cond.rejected), generations, filters)
    for r in rows:
        r["label_source"] = f"study:{cond.name}"
    summary.update(write_pairs(rows, run.pairs(cond.run_name)))
    return Path(summary["jsonl"]), summary


def _audit_inputs(cfg: DeltaStudy, data: Path) -> dict:
    """An audit's result depends on the pairs' content, the judge and its model's weights, the sample."""
    from ...io import file_fingerprint
    from ...models.loading import tier_fingerprint

    a = cfg.audit
    judge_model = tier_fingerprint(cfg.student) if a.judge_model is None else (
        a.judge_model if a.endpoint else tier_fingerprint(TierSpec(name="judge", model=a.judge_model)))
    return {"pairs_sha256": file_fingerprint(data), "judge": a.judge, "judge_model": judge_model, "endpoint": a.endpoint,
            "n": a.n, "seed": cfg.seed}


def _judge(cfg: DeltaStudy):
    if cfg.audit.judge == "loglik" and cfg.audit.judge_model is None:
        from ...audit.judges import LoglikJudge
        from ...models.loading import load_model

        loaded = load_model(cfg.student)
        return LoglikJudge(loaded.model, loaded.tokenizer, name=f"loglik:{cfg.student.name}")
    from ...audit.factory import make_judge

    return make_judge(cfg.audit.judge, judge_model=cfg.audit.judge_model, endpoint=cfg.audit.endpoint)


def _evaluate(cfg: DeltaStudy, tier: TierSpec, out: Path, console) -> Path:
    """Each suite is reused only when scored with exactly these inputs (evaluate's run record)."""
    from ...evaluate.run import evaluate

    e = cfg.eval
    groups: dict = {}
    for suite in e.suites:  # one call per distinct limit
        groups.setdefault(e.limits.get(suite, e.limit), []).append(suite)
    for limit, suites in groups.items():
        evaluate(tier, suites, out, limit=limit, batch_size=e.batch_size, max_new_tokens=e.max_new_tokens,
                 seed=cfg.seed, console=console, on_change=cfg.on_change, generate=cfg.generate)
    return out


def _differences(base_dir: Path, run_dir: Path, cfg: DeltaStudy) -> tuple[dict, dict]:
    """Per metric: value, paired difference to the student with its interval; and the gain."""
    from ...evaluate.run import compare
    from ...io import read_jsonl

    metrics = {}
    for row in compare([base_dir, run_dir], seed=cfg.seed):
        d = row["diffs"][0]
        if d is None:
            continue
        metrics[f"{row['suite']}.{row['metric']}"] = {
            "value": row["values"][1], "base": row["values"][0], "better": row["better"],
            "diff": d["mean"], "ci95": d["ci95"], "significant": d["significant"]}
    diffs, signs = {}, {}
    for g in cfg.eval.gain:
        suite, metric = g.split(".", 1)
        base = {r["id"]: r[metric] for r in read_jsonl(suite_items(base_dir, suite))}
        other = {r["id"]: r[metric] for r in read_jsonl(suite_items(run_dir, suite))}
        diffs[g] = [other[i] - base[i] for i in base if i in other]
        signs[g] = 1.0 if metrics[g]["better"] == "higher" else -1.0
    return metrics, paired_gain(diffs, signs, seed=cfg.seed)


def _data_stage(cfg: DeltaStudy, conditions: list[Condition], run: RunDir, console) -> dict:
    """Answers, one dataset per condition, and each dataset's judged delta; saved as data.json."""
    from ...audit.run import audit_pairs
    from ...generate.prompts import load_prompts
    from ...generate.run import generate_ladder

    t0, times = time.perf_counter(), {}
    ladder = Ladder(tiers=cfg.needed_tiers())
    p = cfg.prompts
    prompts = load_prompts(p.source, column=p.column, id_column=p.id_column, category_column=p.category_column,
                           split=p.split, limit=p.limit)
    generations, gen_stats = generate_ladder(ladder, prompts, cfg.generate, Path(cfg.answers_dir or run.root), console=console)
    times["answers"] = time.perf_counter() - t0

    results = {c.name: {"method": c.method, "chosen": c.chosen, "rejected": c.rejected} for c in conditions}
    for c in conditions:
        path, summary = _pairs(c, generations, cfg.filters, run)
        results[c.name].update(pairs=summary["kept"], data=str(path))
    if cfg.audit is not None:
        t = time.perf_counter()
        judge = None
        for c in conditions:
            if c.rejected is None:
                continue
            audit_dir = run.audit(c.run_name)
            inputs = _audit_inputs(cfg, Path(results[c.name]["data"]))
            legacy = has_summary(audit_dir) and "audit" not in record.read(audit_dir)
            if record.check(audit_dir, "audit", inputs, cfg.on_change, legacy=legacy, what="an audit",
                            resumable=lambda: False) == "done":
                a = read_summary(audit_dir)
            else:
                record.mark(audit_dir, "audit", inputs, "started")  # before any output: a kill leaves it redoable
                judge = judge or _judge(cfg)  # loaded once, and only when some audit is not done
                a = audit_pairs(results[c.name]["data"], judge, n=cfg.audit.n, seed=cfg.seed, out_dir=audit_dir)
                faults.point("audit.before_record")
                record.mark(audit_dir, "audit", inputs, "done")
            if "mean_delta" not in a and a.get("n"):  # a pairwise judge: +1 agree, 0 tie, -1 reversal
                a["mean_delta"], a["mean_delta_ci95"] = a["agreement"] - a["reversals"], None
            results[c.name]["audit"] = {"judge": a["judge"], "mean_delta": a.get("mean_delta"), "ci95": a.get("mean_delta_ci95"),
                                        "agreement": a.get("agreement"), "sampled": a["sampled"]}
        del judge
        times["audit"] = time.perf_counter() - t
    data = {"results": results, "generation": gen_stats, "seconds": times}
    write_json_atomic(run.data, data)
    faults.point("study.after_data")
    return data


def run_delta(cfg: DeltaStudy, *, console=None, stage: str = "all", condition: str | None = None) -> dict | None:
    """Run the whole study (`all`) or one stage of it: `data` (answers, pairs, audit), `train` (every
    condition, or only `condition`: the stage to launch under `accelerate launch` on many GPUs),
    `eval` (the student and every trained condition) or `report`. Each stage resumes what is done."""
    from ...errors import DeltaError

    if stage not in STUDY.stages:
        raise DeltaError(f"unknown stage {stage!r} (stages: {', '.join(STUDY.stages)})")
    run = RunDir(cfg.out_dir)
    conditions = _selected(cfg, stage, condition)
    run.root.mkdir(parents=True, exist_ok=True)
    claim_study(cfg)
    write_json_atomic(run.config, cfg.model_dump(mode="json"))
    t0 = time.perf_counter()
    if stage in ("all", "data"):
        data = _data_stage(cfg, cfg.all_conditions(), run, console)
    elif run.data.is_file():
        data = run.read_data()
    else:
        raise DeltaError(f"{run.root}: no {DATA}; run the data stage first (deltalearn run RECIPE --stage data)")
    _need_pairs(conditions, data["results"])
    if stage in ("all", "train"):
        _train_all(cfg, conditions, run, data["results"], console)
    if stage in ("data", "train"):
        return None
    if stage in ("all", "eval"):
        _evaluate_all(cfg, conditions, run, data["results"], console)
        if condition is not None:
            return None
    return _collect(cfg, conditions, run, data, stage, t0)


def _need_pairs(conditions: list[Condition], results: dict) -> None:
    """Training, a restored evaluation and the report read the pairs, which an archive leaves out: say
    how to get them back before any work."""
    from ...errors import DeltaError

    gone = RunDir.missing_pairs(results, {c.name for c in conditions})
    if gone:
        raise DeltaError(f"{gone[0]}: not here (an archive leaves a study's pairs out); rebuild them from the "
                         "answers with the data stage first (deltalearn run RECIPE --stage data)")


def _selected(cfg: DeltaStudy, stage: str, condition: str | None) -> list[Condition]:
    """The conditions one invocation covers: all of them, one (`--condition`), or none (`base`: the
    student's evaluation alone, which can run before any training)."""
    from ...errors import DeltaError

    conditions = cfg.all_conditions()
    if condition is None:
        return conditions
    if stage not in ("train", "eval"):
        raise DeltaError("--condition selects what one train or eval stage covers; the other stages take every condition")
    if condition == STUDENT and stage == "eval":
        return []
    if condition not in [c.name for c in conditions]:
        also = f", and '{STUDENT}' (the student) for --stage eval" if stage == "eval" else ""
        raise DeltaError(f"unknown condition {condition!r} (conditions: {', '.join(c.name for c in conditions)}{also})")
    return [c for c in conditions if c.name == condition]


def _train_all(cfg: DeltaStudy, conditions: list[Condition], run: RunDir, results: dict, console) -> None:
    for c in conditions:
        if not has_weights(run.weights(c.run_name)) and _kept_evaluation(cfg, c, run, results):
            continue  # restored from an archive: trained and evaluated, only the weights were not kept
        train_stage(cfg.stage_for(c), cfg.student, Path(results[c.name]["data"]), run.model(c.run_name), cfg.seed, console,
                    cfg.on_change)


def _evaluate_all(cfg: DeltaStudy, conditions: list[Condition], run: RunDir, results: dict, console) -> None:
    from ...errors import DeltaError

    _evaluate(cfg, cfg.student, run.eval(STUDENT), console)
    for c in conditions:
        final = run.weights(c.run_name)
        if not run.trained(c.run_name):
            raise DeltaError(f"condition {c.name!r} is not trained yet ({final.parent}); run the train stage first")
        if run.restored(c.run_name):
            if not _kept_evaluation(cfg, c, run, results):
                raise DeltaError(f"condition {c.name!r}: its weights ({final}) are gone and no evaluation of them matches "
                                 f"this recipe; train it again (--stage train --condition '{c.name}')")
            if console is not None:
                console.print(f"{c.name}: restored from an archive without its weights; its evaluation is reused")
            continue
        _evaluate(cfg, TierSpec(name=c.run_name, model=str(final)), run.eval(c.run_name), console)


def _collect(cfg: DeltaStudy, conditions: list[Condition], run: RunDir, data: dict, stage: str, t0: float) -> dict:
    """What is on disk, gathered into results.json and report.md (also after a staged run). The report
    stage alone may find conditions not yet trained or evaluated: it reports the rest and names them."""
    from ...errors import DeltaError

    missing = [c.name for c in conditions if not (run.trained(c.run_name) and run.evaluated(c.run_name))]
    if missing and stage != "report":
        raise DeltaError(f"conditions not trained or evaluated: {', '.join(missing)}")
    if len(missing) == len(conditions) or not run.evaluated(STUDENT):
        raise DeltaError(f"{run.root}: nothing evaluated yet; run the eval stage first")
    conditions = [c for c in conditions if c.name not in missing]
    results, times = data["results"], dict(data["seconds"])
    for c in conditions:
        results[c.name].update(_condition_result(cfg, c, run, Path(results[c.name]["data"])))
        times[f"train {c.name}"] = read_summary(run.model(c.run_name))["seconds"]
    for name in [STUDENT, *(c.run_name for c in conditions)]:
        times[f"eval {name}"] = sum(s["seconds"] for s in read_summary(run.eval(name))["suites"].values())
    base = read_summary(run.eval(STUDENT))["suites"]
    names = {"student": STUDENT, **{c.name: c.run_name for c in conditions}}
    summary = {
        "study": "delta", "name": cfg.name, "results": {c.name: results[c.name] for c in conditions},
        "base": {f"{s}.{m}": v["mean"] for s, info in base.items() for m, v in info["metrics"].items()},
        "generation": data["generation"], "seconds": {k: round(v, 1) for k, v in times.items()},
        "answers": {n: answer_lengths(run.eval(d), cfg.eval.suites) for n, d in names.items()},
        "missing": missing, "total_seconds": round(sum(times.values()), 1), "this_invocation_seconds": round(time.perf_counter() - t0, 1),
        "config": cfg.model_dump(mode="json"),
    }
    faults.point("study.before_results")
    write_json_atomic(run.results, summary)
    from .report import delta_report

    delta_report(run.root)
    if not missing:
        finish_study(cfg)
    return summary


def _condition_result(cfg: DeltaStudy, c: Condition, run: RunDir, pairs: Path) -> dict:
    """A trained and evaluated condition: its last training step, its paired differences and gain."""
    last = read_summary(run.model(c.run_name)).get("last") or {}
    metrics, gain = _differences(run.eval(STUDENT), run.eval(c.run_name), cfg)
    return {"train": {k: last.get(k) for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracy")},
            "metrics": metrics, "gain": gain, "pair_tokens": pair_lengths(pairs)}


def _kept_evaluation(cfg: DeltaStudy, c: Condition, run: RunDir, results: dict) -> bool:
    """A condition restored from an archive (`deltalearn archive`), which keeps no weights: its
    evaluation stands only if its training is recorded as done with the inputs this recipe gives it
    now, and every suite as scored with this recipe's items, budget and seed. The weights themselves
    cannot be hashed once gone: the training record stands in for them."""
    from ...evaluate.run import INPUT_DEFAULTS, engine_of, suite_inputs
    from ...evaluate.suites import expand, get_suite
    from ...train.loop import done_with

    train = cfg.stage_for(c).train_config(cfg.student, Path(results[c.name]["data"]), run.model(c.run_name), cfg.seed, cfg.on_change)
    if not done_with(train):
        return False
    rec = record.read(run.eval(c.run_name))
    for name in expand(cfg.eval.suites):
        r = rec.get(f"suite:{name}")
        if r is None or r["state"] != "done" or not run.suite(c.run_name, name).is_file():
            return False
        suite, limit = get_suite(name), cfg.eval.limits.get(name, cfg.eval.limit)
        want = suite_inputs(suite, suite.items[:limit] if limit else suite.items, r["inputs"]["model_fingerprint"],
                            limit=limit, max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.seed,
                            engine=engine_of(suite, cfg.generate))
        if record.differences(r["inputs"], want, INPUT_DEFAULTS):
            return False
    return True


def answer_lengths(eval_dir: Path, suites: list[str]) -> dict:
    """Per generation suite: the mean answer length in tokens and the share cut by the token budget.
    A preference-tuned model that takes on a teacher's answer form shows it here first."""
    from ...evaluate.suites import expand
    from ...io import read_jsonl

    out = {}
    for name in expand(suites):
        rows = [r for r in read_jsonl(suite_items(eval_dir, name)) if "n_tokens" in r]
        if rows:
            out[name] = {"tokens": sum(r["n_tokens"] for r in rows) / len(rows),
                         "at_limit": sum(r["finish_reason"] == "length" for r in rows) / len(rows)}
    return out


def pair_lengths(data: Path) -> dict:
    """Mean tokens of the chosen and rejected answers a condition trained on."""
    from ...io import read_jsonl

    rows = list(read_jsonl(data))
    out = {}
    sft = all(r["chosen_tier"] == r["rejected_tier"] for r in rows)  # SFT rows repeat chosen as rejected
    for side in ("chosen",) if sft else ("chosen", "rejected"):
        n = [r.get(f"{side}_tokens") for r in rows]
        if n and all(isinstance(x, int) for x in n):
            out[side] = sum(n) / len(n)
    return out
