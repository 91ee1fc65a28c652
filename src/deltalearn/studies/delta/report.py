"""report.md and plots of a finished `kind: delta` study, rebuilt from its results.json alone."""

from __future__ import annotations

from pathlib import Path

from ...io import write_text_atomic
from ...rundir import RunDir


def _ci(v: dict | None, key: str = "ci95", fmt: str = "{:+.3f}") -> str:
    if not v or v.get(key) is None:
        return "-"
    lo, hi = v[key]
    return f"{fmt.format(lo)}..{fmt.format(hi)}"


def short_labels(res: dict) -> dict[str, str]:
    """Plot labels: a grid condition `A>B` loses the tiers' common name prefix (qwen2.5-72b>qwen2.5-32b
    -> 72b>32b; the bare prefix itself reads `full`); named conditions keep their names."""
    import os

    tiers = sorted({t for r in res.values() for t in (r["chosen"], r["rejected"]) if t})
    prefix = os.path.commonprefix(tiers) if len(tiers) > 1 else ""

    def short(t: str) -> str:
        return t[len(prefix):].strip("-_.") or "full"

    return {n: f"{short(r['chosen'])}>{short(r['rejected'])}" if n == f"{r['chosen']}>{r['rejected']}" else n
            for n, r in res.items()}


def _suite_sizes(e: dict) -> str:
    """'mbpp (50 items), humaneval (all items)': each suite's own limit, else the common one."""
    sizes = {n: (e.get("limits") or {}).get(n, e.get("limit")) for n in e["suites"]}
    return ", ".join(f"{n} ({k or 'all'} items)" for n, k in sizes.items())


def _answer_section(s: dict) -> list[str]:
    """Mean answer length per generation suite and model, with the share cut at the token budget; and
    the training answers' mean length per teacher, whose form a tuned student may take on."""
    answers = s.get("answers")
    if not answers:
        return []
    suites = sorted({k for a in answers.values() for k in a})
    lines = ["", "## Answer length", "", "Mean new tokens per answer (share of answers cut by the token budget).", "",
             "| model | " + " | ".join(suites) + " |", "|---|" + "---|" * len(suites)]
    for n, a in answers.items():
        lines.append(f"| {n} | " + " | ".join(f"{a[k]['tokens']:.0f} ({a[k]['at_limit']:.0%})" if k in a else "-"
                                              for k in suites) + " |")
    trained = {n: r["pair_tokens"] for n, r in s["results"].items() if r.get("pair_tokens")}
    if trained:
        lines += ["", "Training answers, mean tokens: " + "; ".join(
            f"{n} " + " > ".join(f"{v:.0f}" for v in t.values()) for n, t in trained.items()) + " (chosen > rejected)."]
    return lines


def delta_report(run_dir: str | Path) -> Path:
    from ...report.plots import bar_with_ci, scatter_with_ci

    run = RunDir(run_dir)
    s = run.read_results()
    res, cfg = s["results"], s["config"]
    names = list(res)
    label = short_labels(res)
    gain_metrics = ", ".join(cfg["eval"]["gain"])
    bar_with_ci([label[n] for n in names], [res[n]["gain"]["mean"] for n in names], [tuple(res[n]["gain"]["ci95"]) for n in names],
                run.plot("gain"), title=f"Gain over the student: mean of {gain_metrics} (95% CI)", ylabel="gain", baseline=0.0)
    judged = [n for n in names if res[n].get("audit") and res[n]["audit"]["mean_delta"] is not None]
    plots = ["![gain per condition](gain.png)"]
    if len(judged) >= 2:
        a = [res[n]["audit"] for n in judged]
        scatter_with_ci([x["mean_delta"] for x in a], [res[n]["gain"]["mean"] for n in judged], [x["ci95"] for x in a],
                        [res[n]["gain"]["ci95"] for n in judged], [label[n] for n in judged], run.plot("gain_vs_delta"),
                        title="Gain against the judged delta of the training pairs",
                        xlabel=f"judged delta, chosen - rejected ({a[0]['judge']})", ylabel="gain over the student")
        plots.append("![gain against judged delta](gain_vs_delta.png)")

    lines = [f"# {s['name']}: delta learning study", "", cfg.get("description", "").strip(), "",
             f"Student: `{cfg['student']['name']}` ({cfg['student']['model']}). Every condition is trained from the "
             f"student on the answers to {cfg['prompts'].get('limit') or 'all'} {cfg['prompts'].get('source', 'shipped')} "
             f"{cfg['prompts'].get('split') or ''} prompts (greedy, up to {cfg['generate']['settings']['max_new_tokens']} new "
             f"tokens) and evaluated on {_suite_sizes(cfg['eval'])}.", "",
             f"Gain = mean over {gain_metrics} of the paired difference to the student (positive = better), with a "
             "95% bootstrap interval over items.", "",
             "| condition | method | chosen > rejected | pairs | judged delta (95% CI) | judge agrees | gain (95% CI) |",
             "|---|---|---|---|---|---|---|"]
    for n in names:
        r = res[n]
        a = r.get("audit")
        delta = f"{a['mean_delta']:+.3f} ({_ci(a)})" if a and a["mean_delta"] is not None else "-"
        agree = f"{a['agreement']:.0%}" if a and a.get("agreement") is not None else "-"
        g = r["gain"]
        lines.append(f"| {n} | {r['method']} | {r['chosen']} > {r['rejected'] or '(SFT: chosen only)'} | {r['pairs']} | "
                     f"{delta} | {agree} | {g['mean']:+.3f} ({_ci(g)}) |")
    metrics = list(s["base"])
    if s.get("missing"):
        lines += ["", f"**Partial report**: not yet trained or evaluated: {', '.join(s['missing'])}."]
    lines += ["", *plots, "", "## Every metric", "",
              "Value per model; the paired difference to the student is in brackets, `*` where its 95% interval excludes zero.", "",
              "| metric | better | student | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for m in metrics:
        cells = []
        for n in names:
            v = res[n]["metrics"].get(m)
            cells.append("-" if v is None else f"{v['value']:.3f} ({v['diff']:+.3f}{'*' if v['significant'] else ''})")
        better = next((res[n]["metrics"][m]["better"] for n in names if m in res[n]["metrics"]), "")
        lines.append(f"| {m} | {better} | {s['base'][m]:.3f} | " + " | ".join(cells) + " |")
    d, f = cfg["dpo"], cfg["sft"]
    lines += ["", "## Training", "",
              f"- DPO-family conditions: beta {d['beta']}, lr {d['lr']}, batch {d['global_batch_size']}, {d['epochs']} epoch, "
              f"max length {d['max_length']}; SFT: lr {f['lr']}, batch {f['global_batch_size']}, {f['epochs']} epoch. "
              "Float32 on the CPU (the `cpu` preset for everything else).", "",
              "| condition | last loss | rewards/chosen | rewards/rejected | reward accuracy |", "|---|---|---|---|---|"]
    for n in names:
        t = res[n].get("train") or {}
        lines.append(f"| {n} | " + " | ".join("-" if t.get(k) is None else f"{t[k]:.3f}"
                                                for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracy")) + " |")
    lines += _answer_section(s)
    lines += ["", "## Wall time where it ran", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s["seconds"].items()] + [f"| total | {s['total_seconds']} |", ""]
    path = run.report
    write_text_atomic(path, "\n".join(lines))
    return path


def summary(cfg, s: dict) -> list:
    """What `deltalearn run` prints after a whole delta study: each condition's gain over the student."""
    from rich.table import Table

    t = Table(title=f"{cfg.name}: gain over the student (mean of {', '.join(cfg.eval.gain)})")
    for c in ("condition", "method", "pairs", "judged delta", "gain (95% CI)"):
        t.add_column(c, justify="left" if c in ("condition", "method") else "right")
    for n, r in s["results"].items():
        a, g = r.get("audit"), r["gain"]
        t.add_row(n, r["method"], str(r["pairs"]), "-" if not a or a["mean_delta"] is None else f"{a['mean_delta']:+.3f}",
                  f"{g['mean']:+.3f} ({g['ci95'][0]:+.3f}..{g['ci95'][1]:+.3f})")
    return [t, f"wrote {cfg.out_dir}/report.md and gain.png in {s['total_seconds']:.0f} s"]
