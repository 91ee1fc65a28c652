"""`deltalearn run R --stage status`: what a delta study's run directory holds, condition by
condition, and the commands that would finish it. Read-only and torch-free, so it can be asked while
a stage runs. It reports what is on disk; whether that matches the recipe is checked by the stages
themselves when they run (record.py), not here."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ... import record
from ...evaluate.suites import expand
from ...rundir import RECORD, STUDENT, RunDir, suite_items, summary_path


def _suites_done(eval_dir: Path, suites: list[str]) -> int:
    rec = record.read(eval_dir) if (eval_dir / RECORD).is_file() else {}
    return sum(1 for s in suites if (rec.get(f"suite:{s}") or {}).get("state") == "done" and suite_items(eval_dir, s).is_file())


def _seconds(summary: Path, suites: list[str] | None = None) -> float | None:
    """Wall seconds a finished stage recorded: a training's `seconds`, or the sum over the suites
    evaluated (model loading excluded), so a session's notes can quote them after a restore."""
    if not summary.is_file():
        return None
    d = json.loads(summary.read_text())
    if suites is None:
        return d.get("seconds")
    secs = [(d.get("suites") or {}).get(s, {}).get("seconds") for s in suites]
    return sum(x for x in secs if x is not None) or None


def study_status(cfg) -> dict:
    """One row per model (the student, then each condition): pairs, judged delta, training state and
    seconds, suites evaluated and their seconds; plus whether the data stage and the report are done."""
    run = RunDir(cfg.out_dir)
    data = run.read_data() if run.data.is_file() else None
    suites = expand(cfg.eval.suites)
    rows = [{"name": "student", "pairs": None, "delta": None, "trained": "-", "train_s": None,
             "evaluated": _suites_done(run.eval(STUDENT), suites),
             "eval_s": _seconds(summary_path(run.eval(STUDENT)), suites)}]
    for c in cfg.all_conditions():
        res = (data or {}).get("results", {}).get(c.name, {})
        model = run.model(c.run_name)
        if run.trained(c.run_name):
            trained = "yes (weights not kept)" if run.restored(c.run_name) else "yes"
        else:
            trained = "started" if (model / RECORD).is_file() else "no"
        audit = res.get("audit") or {}
        rows.append({"name": c.name, "pairs": res.get("pairs"), "delta": audit.get("mean_delta"),
                     "trained": trained, "train_s": _seconds(summary_path(model)),
                     "evaluated": _suites_done(run.eval(c.run_name), suites),
                     "eval_s": _seconds(summary_path(run.eval(c.run_name)), suites)})
    gone = data is not None and bool(RunDir.missing_pairs(data["results"]))
    return {"out_dir": str(run.root), "data": data is not None, "pairs_gone": gone, "suites": len(suites), "rows": rows,
            "report": run.report.is_file() and run.results.is_file() and not run.read_results().get("missing")}


def next_commands(status: dict, recipe: str, overrides: list[str] | None) -> list[str]:
    """The stage commands still to run, in the order the studies so far ran them (each condition
    trained then evaluated, so that an interrupted session leaves whole conditions)."""
    base = "deltalearn run " + shlex.join([recipe, *[a for o in overrides or [] for a in ("--set", o)]])
    cmds = []
    for r in status["rows"][1:]:
        if r["trained"] in ("no", "started"):
            cmds.append(f"{base} --stage train --condition {shlex.quote(r['name'])}")
        if r["evaluated"] < status["suites"]:
            cmds.append(f"{base} --stage eval --condition {shlex.quote(r['name'])}")
    if cmds or not status["report"]:
        cmds.append(f"{base} --stage report")
    if not status["data"] or (cmds and status.get("pairs_gone")):  # a restored archive: its pairs first
        cmds.insert(0, f"{base} --stage data")
    return cmds


def view(cfg, recipe: str, overrides: list[str] | None) -> list:
    """`deltalearn run R --stage status`: a table of what the run directory holds, then the commands left."""
    from rich.table import Table

    from .. import Command

    st = study_status(cfg)
    t = Table(title=f"{cfg.name}: {st['out_dir']}")
    t.add_column("model", no_wrap=True, min_width=max(len(r["name"]) for r in st["rows"]))
    for c in ("pairs", "judged delta", "trained", "train s", "suites", "eval s"):
        t.add_column(c, justify="left" if c == "trained" else "right", no_wrap=c == "trained")
    secs = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
    for r in st["rows"]:
        t.add_row(r["name"], "-" if r["pairs"] is None else str(r["pairs"]), "-" if r["delta"] is None else f"{r['delta']:+.3f}",
                  r["trained"], secs(r["train_s"]), f"{r['evaluated']}/{st['suites']}", secs(r["eval_s"]))
    lines: list = [t]
    if not st["data"]:
        lines.append("(no data stage yet: no answers, pairs or audits)")
    cmds = next_commands(st, recipe, overrides)
    lines.append("Left to run, in order:" if cmds else "Complete: every condition trained and evaluated, report written.")
    return lines + [Command(f"  {c}") for c in cmds]
