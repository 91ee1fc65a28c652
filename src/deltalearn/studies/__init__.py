"""The paper's studies as plugins: each `studies/<name>/` package declares one `Study`, and the CLI
(`deltalearn run`, `report`, `recipe explain`) and recipe validation read everything from it: the
recipe schema, the stages `--stage` accepts, whether `--condition` and `--dry-run` apply, the summary
table printed after a run, and the report rebuilt from a run directory.

A plugin names its parts as "module:attribute" inside its own package, so that listing the studies
(for `--help` and validation messages) imports no torch; a part's module loads when it is used:

    schema   a pydantic model: the recipe (`kind:` selects it)
    run      run(cfg, *, console, stage, condition) -> summary dict, or None for a partial stage
    summary  summary(cfg, summary) -> list of things rich prints (tables, lines)
    report   report(run_dir) -> Path of the rebuilt report.md
    status   (optional) status(cfg, recipe, overrides) -> list of printables (`Command` for a command
             line): what is done, what is left
    plan     (optional) plan(cfg, recipe, overrides) -> list of printables: the cost before running
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class Study:
    kind: str
    package: str
    about: str
    schema: str
    run: str
    summary: str
    report: str
    stages: tuple[str, ...] = ("all",)  # what --stage accepts besides status; "all" first
    status: str | None = None
    plan: str | None = None
    by_condition: bool = False  # --condition picks one condition of a partial stage

    def part(self, name: str):
        """The plugin's part `name` (schema, run, summary, ...), imported on first use."""
        ref = getattr(self, name)
        if ref is None:
            raise KeyError(f"study {self.kind!r} has no {name}")
        module, attr = ref.split(":")
        return getattr(import_module(f"{self.package}.{module}"), attr)

    @property
    def staged(self) -> bool:
        return len(self.stages) > 1


def registry() -> dict[str, Study]:
    from .bold import STUDY as BOLD
    from .delta import STUDY as DELTA
    from .logreg import STUDY as LOGREG

    return {s.kind: s for s in (BOLD, DELTA, LOGREG)}


class Command(str):
    """A shell command line among a part's printables: printed as is (no markup, no highlighting,
    never wrapped inside a word)."""
