"""`deltalearn eval`: answer each suite's prompts (greedy, seeded, cached), score every item, and
summarise with 95% bootstrap intervals; `compare` puts models side by side with paired intervals."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__, faults, record
from ..metrics.stats import bootstrap_ci
from ..errors import DeltaError
from ..generate.base import GenerationSettings
from ..generate.cache import GenerationCache, record_key
from ..generate.prompts import Prompt
from ..generate.run import GenerateConfig, generate_tier, make_backend, tier_key_fingerprint
from ..io import fingerprint, read_jsonl, remove_stale_temps, write_json_atomic, write_jsonl_atomic
from ..models.spec import TierSpec
from ..rundir import SUMMARY, answer_cache, loglik_cache, suite_items, summary_path
from .suites import expand, get_suite


# Inputs added since older records were written, at the value that work had.
INPUT_DEFAULTS = {"engine": "hf"}


def engine_of(suite, generate: GenerateConfig | None) -> str:
    """The engine that answers `suite`: log-likelihoods always come from the local HF model."""
    return "hf" if suite.mode == "loglik" or generate is None else generate.backend


def suite_inputs(suite, items, model_fp: str, *, limit, max_new_tokens, seed, engine: str = "hf") -> dict:
    """What a suite's scores depend on: the weights, the items, the generation budget and seed, and
    the engine (greedy answers can differ between engines)."""
    budget = None if suite.mode == "loglik" else (max_new_tokens or suite.max_new_tokens)
    return {"model_fingerprint": model_fp, "suite": suite.name, "source": suite.source, "limit": limit,
            "items_sha": fingerprint([[i.id, i.prompt] for i in items]), "max_new_tokens": budget,
            "seed": None if suite.mode == "loglik" else seed, "metrics": sorted(suite.better), "engine": engine}


def evaluate(tier: TierSpec, suites: list[str], out_dir: str | Path, *, limit: int | None = None, batch_size: int = 8,
             seed: int = 0, max_new_tokens: int | None = None, console=None, on_change: str = "refuse",
             generate: GenerateConfig | None = None) -> dict:
    """Score `tier` on `suites` into `out_dir`. A suite already scored there with exactly these inputs
    is reused; one scored with other inputs (another limit, budget, seed or model) is refused, or
    with `on_change="rerun"` scored again. `generate` picks the engine of the generation suites
    (default: HF, in process). Answers and log-likelihoods come from caches keyed by the
    weights, the item and the settings, so a rerun only computes what is missing."""
    for key, value in (("limit", limit), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise DeltaError(f"eval: {key} must be a positive number, got {value}")
    out = Path(out_dir)
    names = expand(suites)
    loaded = [get_suite(n) for n in names]  # unknown suite names fail before the model loads
    model_fp = tier_key_fingerprint(tier, GenerateConfig())
    path = summary_path(out)
    old = json.loads(path.read_text()) if path.is_file() else {}
    summary = {"deltalearn": __version__, "model": tier.model_dump(), "seed": seed, "suites": dict(old.get("suites", {}))}
    todo = []
    for suite in loaded:
        items = suite.items[:limit] if limit else suite.items
        inputs = suite_inputs(suite, items, model_fp, limit=limit, max_new_tokens=max_new_tokens, seed=seed,
                              engine=engine_of(suite, generate))
        legacy = suite.name in summary["suites"] and f"suite:{suite.name}" not in record.read(out)
        # A started suite holds nothing of its own (answers live in caches keyed by their inputs).
        state = record.check(out, f"suite:{suite.name}", inputs, on_change, legacy=legacy,
                             what=f"an evaluation of {suite.name}", resumable=lambda: False,
                             defaults=INPUT_DEFAULTS)
        if state != "done" or suite.name not in summary["suites"] or not suite_items(out, suite.name).is_file():
            todo.append((suite, items, inputs))
            record.mark(out, f"suite:{suite.name}", inputs, "started")  # before any output: a kill leaves it redoable
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        _score(tier, todo, out, summary, batch_size=batch_size, seed=seed, max_new_tokens=max_new_tokens, console=console,
               generate=generate)
    summary = json.loads(json.dumps(summary))  # as summary.json holds it, whether scored now or reused
    return {**summary, "suites": {n: summary["suites"][n] for n in names}}


def _score(tier, todo, out: Path, summary: dict, *, batch_size, seed, max_new_tokens, console, generate=None) -> None:
    backends: dict = {}  # one per engine, built when a suite first needs it

    def backend_for(engine: str):
        if engine not in backends:
            backends[engine] = make_backend(tier, _engine_config(generate, engine))
        return backends[engine]

    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), console=console) as progress:
            for suite, items, inputs in todo:
                t0 = time.perf_counter()
                engine = inputs["engine"]
                if suite.mode == "loglik":
                    rows = _loglik_rows(suite, items, backend_for("hf"), loglik_cache(out), progress)
                else:
                    rows = _generated_rows(tier, suite, items, backend_for(engine), _engine_config(generate, engine),
                                           out, batch_size, seed, max_new_tokens, progress)
                _write_suite(out, suite, rows, t0, seed, summary, engine)
                faults.point("eval.before_record")
                record.mark(out, f"suite:{suite.name}", inputs, "done")
    finally:
        for backend in backends.values():
            backend.close()


def _engine_config(generate: GenerateConfig | None, engine: str) -> GenerateConfig:
    return GenerateConfig() if generate is None else generate.model_copy(update={"backend": engine})


def _generated_rows(tier, suite, items, backend, gen: GenerateConfig, out: Path, batch_size, seed, max_new_tokens,
                    progress) -> list[dict]:
    cfg = gen.model_copy(update={"batch_size": batch_size, "settings": GenerationSettings(
        max_new_tokens=max_new_tokens or suite.max_new_tokens, seed=seed)})
    # Each engine keeps its own cache: the same weights and prompt may give other answers elsewhere.
    cache = answer_cache(out, gen.backend)
    res = generate_tier(tier, [Prompt(id=i.id, text=i.prompt) for i in items], cfg, cache,
                        backend=backend, progress=progress, label=suite.name)
    rows = []
    for item in items:
        rec = res["records"][item.id]
        rows.append({"id": item.id, "prompt": item.prompt, "answer": rec["response"], "n_tokens": rec["n_tokens"],
                     "finish_reason": rec["finish_reason"], **suite.score(item, rec["response"])})
    return rows


def _loglik_rows(suite, items, backend, cache_path: Path, progress=None, flush_every: int = 16) -> list[dict]:
    """Score each item, keeping every scored row in the generation cache's append-only JSONL, keyed
    by (model, item, suite and its metrics): a rerun or a killed run (a whole MMLU is ~2 h here)
    scores only what is missing."""
    model, tok = getattr(backend, "model", None), getattr(backend, "tokenizer", None)
    if model is None:
        raise DeltaError(f"suite {suite.name} scores log-likelihoods: it needs a local model, not an endpoint")
    cache = GenerationCache(cache_path)
    scoring = {"suite": suite.name, "metrics": sorted(suite.better)}  # a new metric means a new key
    task = progress.add_task(suite.name, total=len(items), tps="log-likelihood") if progress is not None else None
    rows, pending = [], []
    for item in items:
        key = record_key(backend.fingerprint, item.id, item.prompt, scoring)
        hit = cache.get(key)
        if hit:
            row = hit["row"]
        else:
            row = {"id": item.id, "prompt": item.prompt, **suite.score(model, tok, item)}
            pending.append({"key": key, "row": row})
            if len(pending) >= flush_every:
                cache.add(pending)
                faults.point("eval.loglik_flush")
                pending = []
        rows.append(row)
        if task is not None:
            progress.advance(task)
    cache.add(pending)
    return rows


def _write_suite(out: Path, suite, rows: list[dict], t0: float, seed: int, summary: dict, engine: str = "hf") -> None:
    write_jsonl_atomic(suite_items(out, suite.name), rows)
    summary["suites"][suite.name] = {
        "kind": suite.kind, "source": suite.source, "n": len(rows), "seconds": round(time.perf_counter() - t0, 2),
        "engine": engine,
        "metrics": {m: _stat([r[m] for r in rows], seed) | {"better": b} for m, b in suite.better.items()},
    }
    write_json_atomic(summary_path(out), summary)  # partial results survive a later failure


def _stat(values: list[float], seed: int) -> dict:
    mean = sum(values) / len(values) if values else float("nan")
    return {"mean": mean, "ci95": bootstrap_ci(values, seed=seed)}


def compare(run_dirs: list[str | Path], *, seed: int = 0) -> list[dict]:
    """Rows of (suite, metric, values per model, difference from the first model with a paired
    bootstrap 95% interval over the items both answered, and whether it excludes zero)."""
    runs = []
    for d in run_dirs:
        path = summary_path(d)
        if not path.is_file():
            raise DeltaError(f"{d}: no {SUMMARY} (not an eval run directory)")
        runs.append((Path(d), json.loads(path.read_text())))
    base_dir, base = runs[0]
    rows = []
    for suite, info in base["suites"].items():
        base_items = {r["id"]: r for r in read_jsonl(suite_items(base_dir, suite))}
        for metric, stat in info["metrics"].items():
            row = {"suite": suite, "metric": metric, "better": stat["better"], "values": [stat["mean"]], "diffs": []}
            for d, s in runs[1:]:
                if metric not in s["suites"].get(suite, {}).get("metrics", {}):  # not run, or by an older version
                    row["values"].append(None)
                    row["diffs"].append(None)
                    continue
                other = {r["id"]: r for r in read_jsonl(suite_items(d, suite))}
                shared = [i for i in base_items if i in other]
                diffs = [other[i][metric] - base_items[i][metric] for i in shared]
                lo, hi = bootstrap_ci(diffs, seed=seed)
                mean = sum(diffs) / len(diffs) if diffs else float("nan")
                row["values"].append(s["suites"][suite]["metrics"][metric]["mean"])
                row["diffs"].append({"mean": mean, "ci95": (lo, hi), "n": len(shared), "significant": lo > 0 or hi < 0})
            rows.append(row)
    return rows
