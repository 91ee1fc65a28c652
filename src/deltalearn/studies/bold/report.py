"""report.md, tables and plots of a finished bold-section study, rebuilt from its results.json alone.

Every "pattern" line is decided by a paired 95% interval (each condition minus the base, item by item
on the same prompts), never by point estimates; the line prints the difference and its interval.
"""

from __future__ import annotations

from pathlib import Path

from ...io import write_text_atomic
from ...rundir import RunDir

LABELS = {"base": "base (after warm-up)", "sft3": "SFT on 3-section", "sft2": "SFT on 2-section",
          "dpo_3_over_2": "DPO 3 > 2", "dpo_2_over_3": "DPO 2 > 3", "dpo_3_over_3": "DPO 3 > 3 (zero delta)"}
SET_NAMES = {"test": "test prompts", "heldout": "held-out SciQ"}
MAX_SHORTER = 0.25  # answers may be at most this much shorter than the base's for an amplification to count


def fmt_diff(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['mean']:+.2f} ({d['ci95'][0]:+.2f}..{d['ci95'][1]:+.2f})"


def _diff(s: dict, label: str, key: str, metric: str = "bold_sections") -> dict | None:
    return ((s.get("differences") or {}).get(label) or {}).get(key, {}).get(metric)


def shape_checks(s: dict) -> dict:
    """The paper's pattern, line by line: True/False by the paired intervals, None when not run."""
    res = s["results"]
    sets = ["test"] + (["heldout"] if res["base"].get("heldout") else [])

    def above(label, key):
        d = _diff(s, label, key)
        return None if d is None else d["ci95"][0] > 0

    def below(label, key):
        d = _diff(s, label, key)
        return None if d is None else d["ci95"][1] < 0

    def within(label, key):
        d = _diff(s, label, key)
        return None if d is None else d["ci95"][0] <= 0 <= d["ci95"][1]

    def length_kept(key):
        if "dpo_3_over_2" not in res:
            return None
        base = res["base"] if key == "test" else res["base"].get("heldout")
        cond = res["dpo_3_over_2"] if key == "test" else res["dpo_3_over_2"].get("heldout")
        if not base or not cond:
            return None
        return cond["length_words"]["mean"] >= (1 - MAX_SHORTER) * base["length_words"]["mean"]

    checks = {}
    for key in sets:
        where = SET_NAMES[key]
        checks[f"DPO 3>2 above base ({where}; paired 95% CI above 0)"] = (above("dpo_3_over_2", key), _diff(s, "dpo_3_over_2", key))
        checks[f"DPO 3>2 keeps its answers' length ({where}; no more than 25% fewer words than base)"] = (length_kept(key), None)
        checks[f"the delta's effect: DPO 3>2 above the zero-delta DPO 3>3 ({where}; paired CI above 0)"] = (
            above("delta_effect", key), _diff(s, "delta_effect", key))
        checks[f"DPO 2>3 below base ({where}; paired CI below 0)"] = (below("dpo_2_over_3", key), _diff(s, "dpo_2_over_3", key))
        checks[f"SFT on 3-section below base ({where}; paired CI below 0)"] = (below("sft3", key), _diff(s, "sft3", key))
        checks[f"SFT on 2-section below base ({where}; paired CI below 0)"] = (below("sft2", key), _diff(s, "sft2", key))
        checks[f"DPO 3>3 within noise of base ({where}; paired CI contains 0)"] = (within("dpo_3_over_3", key),
                                                                                  _diff(s, "dpo_3_over_3", key))
    if "dpo_3_over_2" in res:
        lo = res["dpo_3_over_2"]["bold_sections"]["ci95"][0]
        checks["DPO 3>2 beyond its training data (test prompts; 95% CI above the 3 sections it was trained on)"] = (lo > 3, None)
    return checks


def amplifies(s: dict) -> bool | None:
    """The demo's pass rule: DPO 3>2 above base on every evaluated set, with answers of sane length."""
    checks = shape_checks(s)
    keys = [k for k in checks if k.startswith(("DPO 3>2 above base", "DPO 3>2 keeps"))]
    values = [checks[k][0] for k in keys]
    return None if not values or any(v is None for v in values) else all(values)


def bold_report(run_dir: str | Path) -> Path:
    from ...report.plots import bar_with_ci

    run = RunDir(run_dir)
    s = run.read_results()
    res = s["results"]
    names = list(res)
    bar_with_ci([LABELS.get(n, n) for n in names], [res[n]["bold_sections"]["mean"] for n in names],
                [tuple(res[n]["bold_sections"]["ci95"]) for n in names], run.plot("bold_sections"),
                title="Distinct bold headers per held-out answer (95% CI)", ylabel="bold sections",
                baseline=res["base"]["bold_sections"]["mean"])
    lines = ["# Bold-section control (study 1 of the delta learning paper)", "",
             "Bold sections = distinct bold header lines per answer (a header repeated in a loop counts once; the primary "
             "metric); the raw count, loops included, is shown beside it. Differences are paired, item by item against the "
             "base on the same prompts, with 95% bootstrap intervals.", ""]
    for key in ("test", "heldout"):
        rows = [n for n in names if (res[n] if key == "test" else res[n].get("heldout"))]
        if not rows:
            continue
        cfg = s["config"]
        n_items = cfg["test_limit"] if key == "test" else cfg.get("heldout_limit")
        lines += [f"## {SET_NAMES[key]} ({n_items} prompts)", "",
                  "| condition | bold sections (95% CI) | minus base, paired (95% CI) | raw count, loops included | words per answer |"
                  + (" paper (Llama-3.2-3B) |" if key == "test" else ""),
                  "|---|---|---|---|---|" + ("---|" if key == "test" else "")]
        for n in rows:
            r = res[n] if key == "test" else res[n]["heldout"]
            b, w = r["bold_sections"], r["length_words"]
            raw = r.get("raw_bold_sections", b)
            paper = f" {s['paper'].get(n, '-')} |" if key == "test" else ""
            lines.append(f"| {LABELS.get(n, n)} | {b['mean']:.2f} ({b['ci95'][0]:.2f}..{b['ci95'][1]:.2f}) | "
                         f"{fmt_diff(_diff(s, n, key)) if n != 'base' else '-'} | {raw['mean']:.2f} | {w['mean']:.0f} |{paper}")
        effect = _diff(s, "delta_effect", key)
        if effect:
            lines += ["", f"The delta's effect, DPO 3 > 2 minus DPO 3 > 3 (same settings, zero delta), paired: {fmt_diff(effect)}."]
        lines.append("")
    lines += ["![bold sections](bold_sections.png)", "", "## The paper's pattern, checked by the intervals", ""]
    for k, (v, d) in shape_checks(s).items():
        lines.append(f"- {k}: {'not run' if v is None else 'yes' if v else 'NO'}" + (f" ({fmt_diff(d)})" if d else ""))
    cfg = s["config"]
    d, w = cfg["dpo"], cfg.get("warmup")
    lines += ["", "## What this reproduces and what it does not", "",
              f"- Student: `{cfg['student']['model']}` (SmolLM2-135M-Instruct), not Llama-3.2-3B-Instruct; prompts: "
              f"{cfg['train_limit']} shipped train prompts (not Tulu 3), {cfg['test_limit']} held-out test prompts"
              + (f", and {cfg['heldout_limit']} SciQ questions the project does not ship." if cfg.get("heldout_limit") else "."),
              "- Training answers are the student's own greedy answers rewritten with exactly k bold header lines "
              "(deterministic procedure in `studies/bold/sections.py`); the zero-delta control pairs two different "
              "3-section versions of the same answer.",
              "- SmolLM2-135M writes almost no lines that are only a bold span, so there is no behaviour to amplify: "
              + (f"the base of every condition is the student after an SFT warm-up on 3-section answers (lr {w['lr']}, "
                 f"{w['epochs']} epoch)." if w else "no warm-up was run."),
              f"- DPO: length-normalised, beta {d['beta']}, lr {d['lr']}, batch {d['global_batch_size']}, {d['epochs']} epoch(s)"
              + (f", plus {d['nll_coef']} x the chosen answer's per-token NLL (RPO-style; the paper's loss has none: "
                 "`--set dpo.nll_coef=0 --set out_dir=DIR` runs the paper's loss here; docs/RESULTS.md compares the two)"
                 if d.get("nll_coef") else " (the paper's loss, no NLL term)")
              + f" (paper: beta 5, lr 5e-7, batch 32). SFT: lr {cfg['sft']['lr']}, batch {cfg['sft']['global_batch_size']}, "
              f"{cfg['sft']['epochs']} epoch(s) (paper: lr 1e-6, batch 256). Float32 on the CPU.",
              f"- Pairs per condition: about {s['train_pairs']}; the paper used Tulu 3's prompts at full scale, so "
              "magnitudes (81.1 sections) are not expected here, only the direction of each effect.", "",
              "## Wall time where it ran", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s["seconds"].items()] + [f"| total | {s['total_seconds']} |", ""]
    path = run.report
    write_text_atomic(path, "\n".join(lines))
    return path


def summary(cfg, s: dict) -> list:
    """What `deltalearn run`/`demo` prints after a bold study: the table, the delta's effect, the shape checks."""
    from rich.table import Table

    held = cfg.heldout_limit > 0
    t = Table(title=f"{cfg.name}: distinct bold section headers per answer, {cfg.test_limit} test prompts"
                    + (f" and {cfg.heldout_limit} held-out SciQ questions" if held else "") + " (minus base: paired 95% CI)")
    cols = ["condition", "test (95% CI)", "test minus base", "words"] + (["SciQ", "SciQ minus base", "words "] if held else []) + ["paper"]
    for c in cols:
        t.add_column(c, justify="left" if c == "condition" else "right")
    for n, r in s["results"].items():
        b = r["bold_sections"]
        row = [LABELS.get(n, n), f"{b['mean']:.2f} ({b['ci95'][0]:.2f}..{b['ci95'][1]:.2f})",
               fmt_diff(_diff(s, n, "test")) if n != "base" else "-", f"{r['length_words']['mean']:.0f}"]
        if held:
            h = r["heldout"]
            row += [f"{h['bold_sections']['mean']:.2f}", fmt_diff(_diff(s, n, "heldout")) if n != "base" else "-",
                    f"{h['length_words']['mean']:.0f}"]
        t.add_row(*row, str(s["paper"].get(n, "-")))
    lines: list = [t]
    if "delta_effect" in s["differences"]:
        lines.append("the delta's effect (DPO 3>2 minus DPO 3>3, paired): " + ", ".join(
            f"{k} {fmt_diff(v['bold_sections'])}" for k, v in s["differences"]["delta_effect"].items()))
    for k, (v, d) in shape_checks(s).items():
        if v is not None:
            lines.append(f"  {'yes' if v else 'NO '}  {k}" + (f": {fmt_diff(d)}" if d else ""))
    lines.append(f"wrote {cfg.out_dir}/report.md and bold_sections.png in {s['total_seconds']:.0f} s")
    return lines
