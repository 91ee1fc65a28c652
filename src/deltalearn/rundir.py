"""The run-directory layout, in one place: what each piece of work writes and where a study keeps it.

Every stage writes a `summary.json` beside its outputs (a training run, an evaluation, an audit) and a
`record.json` of the inputs it was made from (record.py). A study's run directory holds one such
directory per piece of work:

    OUT/config.json            the validated recipe
    OUT/data.json              the data stage's summary (answers, pairs, audits)
    OUT/pairs/NAME.jsonl       a condition's preference pairs (and NAME/, the same rows as an HF dataset)
    OUT/audit/NAME/            the judge's audit of those pairs
    OUT/models/NAME/           a training run (final/ holds the weights, checkpoints/ the resumable state)
    OUT/eval/base/, eval/NAME/ the student's and each condition's evaluation
    OUT/results.json, report.md, *.png   the study's result and report

Only the small files travel to an archive (archive.py); weights and checkpoints stay behind."""

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
STUDENT = "base"  # the untrained student's evaluation directory under eval/


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

    def pairs(self, name: str) -> Path:
        """Where a condition's pairs go, without the suffix (pairs/dataset.py writes NAME.jsonl and NAME/)."""
        return self.root / "pairs" / name

    def audit(self, name: str) -> Path:
        return self.root / "audit" / name

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def weights(self, name: str) -> Path:
        return self.model(name) / "final"

    def eval(self, name: str = STUDENT) -> Path:
        return self.root / "eval" / name

    def read_results(self) -> dict:
        return json.loads(self.results.read_text())
