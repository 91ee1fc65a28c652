"""The run-directory layout, in one place: what each piece of work writes and where a study keeps it.

Every stage writes a `summary.json` beside its outputs (a training run, an evaluation, an audit) and a
`record.json` of the inputs it was made from (record.py). A study's run directory holds one such
directory per piece of work:

    OUT/config.json            the validated recipe
    OUT/data.json              the data stage's summary (answers, pairs, audits)
    OUT/generations/TIER.jsonl each ladder tier's answers (or under the recipe's answers_dir, shared)
    OUT/pairs/NAME.jsonl       a condition's preference pairs (and NAME/, the same rows as an HF dataset)
    OUT/audit/NAME/            the judge's audit of those pairs
    OUT/data/NAME.jsonl        training files a study prepares itself (the bold study's answers, warm-up)
    OUT/models/NAME/           a training run (final/ holds the weights, checkpoints/ the resumable state)
    OUT/eval/base/, eval/NAME/ the student's and each condition's evaluation, SUITE.jsonl per suite
    OUT/results.json, report.md, *.png   the study's result and report

Only the small files travel to an archive (archive.py): what `HEAVY_DIRS` and `HEAVY_SUFFIXES` name
stays behind, and so do a delta study's pairs (its data stage rebuilds them from the answers). A condition restored from one is trained and evaluated but has no weights (`restored`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SUMMARY = "summary.json"
RESULTS = "results.json"
DATA = "data.json"
CONFIG = "config.json"
REPORT = "report.md"
MANIFEST = "manifest.json"
RECORD = "record.json"  # record.py's record of the inputs a piece of work was made from
PAIRS = "pairs"  # a delta study's preference pairs, rebuilt from the answers by its data stage
STUDENT = "base"  # the untrained student's evaluation directory under eval/
FINAL = "final"  # a training run's weights
CHECKPOINTS = "checkpoints"  # a training run's resumable state
TENSORBOARD = "tensorboard"
# What a run directory holds that is large, rebuildable or only for resuming a stopped training: an
# archive leaves it behind, so a restored run has every record and result and no weights.
HEAVY_DIRS = {FINAL, CHECKPOINTS, TENSORBOARD, "__pycache__"}
HEAVY_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".npy", ".npz", ".tmp", ".lock"}


def suite_items(eval_dir: str | Path, suite: str) -> Path:
    """One suite's per-item answers and scores in an evaluation directory (evaluate/run.py writes it)."""
    return Path(eval_dir) / f"{suite}.jsonl"


def answer_cache(eval_dir: str | Path, engine: str) -> Path:
    """An evaluation's cache of generated answers; each engine keeps its own (greedy answers may differ)."""
    return Path(eval_dir) / ("generations.jsonl" if engine == "hf" else f"generations-{engine}.jsonl")


def loglik_cache(eval_dir: str | Path) -> Path:
    """An evaluation's cache of log-likelihood scores (always the local HF model's)."""
    return Path(eval_dir) / "loglik_cache.jsonl"


def summary_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / SUMMARY


def has_summary(work_dir: str | Path) -> bool:
    return summary_path(work_dir).is_file()


def read_summary(work_dir: str | Path) -> dict:
    return json.loads(summary_path(work_dir).read_text())


@dataclass(frozen=True)
class RunDir:
    """A study's run directory: every path a stage reads or writes is named here."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def report(self) -> Path:
        return self.root / REPORT

    def answers(self, tier: str) -> Path:
        """One ladder tier's answers (generate/run.py's resumable cache)."""
        return self.root / "generations" / f"{tier}.jsonl"

    def pairs(self, name: str) -> Path:
        """Where a condition's pairs go, without the suffix (pairs/dataset.py writes NAME.jsonl and NAME/)."""
        return self.root / PAIRS / name

    def rebuilt_pairs(self, rel: Path) -> bool:
        """Is `rel` (relative to the root) a pairs file (or its saved dataset) that this study's data stage
        rebuilds from its answers? An archive leaves those out: the data stage remakes them in seconds,
        byte for byte."""
        return self.data.is_file() and len(rel.parts) > 1 and rel.parts[0] == PAIRS

    @staticmethod
    def missing_pairs(results: dict, names=None) -> list[str]:
        """The pairs files that `data.json`'s results (of `names`, default all) name and that are not here:
        what a restored archive lacks until its data stage runs."""
        return [r["data"] for n, r in results.items()
                if (names is None or n in names) and "data" in r and not Path(r["data"]).is_file()]

    def audit(self, name: str) -> Path:
        return self.root / "audit" / name

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def train_data(self, name: str) -> Path:
        return self.root / "data" / f"{name}.jsonl"

    def weights(self, name: str) -> Path:
        return self.model(name) / FINAL

    def eval(self, name: str = STUDENT) -> Path:
        return self.root / "eval" / name

    def suite(self, name: str, suite: str) -> Path:
        """One suite's per-item scores in an evaluation."""
        return suite_items(self.eval(name), suite)

    def trained(self, name: str) -> bool:
        return has_summary(self.model(name))

    def evaluated(self, name: str = STUDENT) -> bool:
        return has_summary(self.eval(name))

    def restored(self, name: str) -> bool:
        """Trained (its summary is here) but without weights: copied back from an archive."""
        from .io import has_weights

        return self.trained(name) and not has_weights(self.weights(name))

    def plot(self, name: str) -> Path:
        """A report's figure, beside report.md (archive.py keeps the plots a report links to)."""
        return self.root / f"{name}.png"

    def extra(self, filename: str) -> Path:
        """A study's own file at the top level (logreg's curves.json): named by that study."""
        return self.root / filename

    def read_data(self) -> dict:
        return json.loads(self.data.read_text())

    def read_results(self) -> dict:
        return json.loads(self.results.read_text())


@dataclass(frozen=True)
class LadderDir:
    """`deltalearn ladder --measure`'s output: TIER/ (its evaluation and TIER/measure.json: bits per
    character, tokens/s), ladder.json (every tier's scores and the orders) and ladder.md (the table)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def tier(self, name: str) -> Path:
        return self.root / name

    def measure(self, name: str) -> Path:
        return self.tier(name) / "measure.json"

    @property
    def result(self) -> Path:
        return self.root / "ladder.json"

    @property
    def table(self) -> Path:
        return self.root / "ladder.md"
