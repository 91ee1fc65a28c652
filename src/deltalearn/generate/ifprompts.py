"""Instruction-following prompts in the Tulu 3 IF style: a base task followed by 1-3 verifiable
constraints drawn from IFEval's registry, each with the random parameters its own
`build_description` picks (if-verifiable's checkers).

The set is fixed, like a dataset: base tasks are the project's templates x topics
(`data/if_tasks.json`), topics split once into `train` and `heldout`, and every random choice is
seeded by the prompt's id. `source: ifeval` in a recipe reads it; the `ifeval_heldout` suite and the
`ifeval` judge read the same constraints from it.
"""

from __future__ import annotations

import functools
import json
import random
import re
from importlib import resources

from ..errors import DeltaError
from .base import Prompt

SPLITS = ("train", "heldout")
SEED = 0  # part of the set's definition: another seed is another dataset
# Left out of the draw: the answer must be in a language the registry picks at random (Kannada,
# Marathi, ...), which no tier of the ladder writes.
EXCLUDED = {"language:response_language"}
N_CONSTRAINTS = (1, 2, 3)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@functools.lru_cache(maxsize=None)
def base_tasks(split: str) -> tuple[tuple[str, str], ...]:
    """(id, text) of every base task of `split`, in a fixed shuffled order (a `limit` takes a spread)."""
    if split not in SPLITS:
        raise DeltaError(f"instruction-following prompts: split {split!r} (splits: {', '.join(SPLITS)})")
    data = json.loads(resources.files("deltalearn.data").joinpath("if_tasks.json").read_text(encoding="utf-8"))
    tasks = [(f"if-{split}-{t:02d}-{_slug(topic)}", template.format(topic=topic))
             for topic in data["topics"][split] for t, template in enumerate(data["templates"])]
    random.Random(f"{SEED}:{split}").shuffle(tasks)
    return tuple(tasks)


def _draw(registry: dict, conflicts: dict, rng: random.Random) -> list[str]:
    """1-3 instruction ids, none in conflict with another (IFEval's own conflict table)."""
    ids: list[str] = []
    pool = sorted(set(registry) - EXCLUDED)
    for _ in range(rng.choice(N_CONSTRAINTS)):
        free = [i for i in pool if i not in ids and not any(i in conflicts.get(j, ()) or j in conflicts.get(i, ()) for j in ids)]
        if not free:
            break
        ids.append(rng.choice(free))
    return ids


def _build(cls, iid: str, base: str, seed: str | None, **kwargs) -> tuple[str, dict]:
    """One `build_description`, which draws from the global `random`: seeded here, and the caller's
    state put back afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        checker = cls(iid)
        if iid == "combination:repeat_prompt":
            kwargs.setdefault("prompt_to_repeat", base)
        text = checker.build_description(**kwargs)
        args = checker.get_instruction_args() or {}
    finally:
        random.setstate(state)
    return text, {k: v for k, v in args.items() if v is not None}


def _describe(cls, iid: str, base: str, seed: str, tries: int = 8) -> tuple[str, dict]:
    """The constraint's text and the arguments that reproduce it. A draw is kept only if its
    arguments rebuild the same text: IFEval's nth_paragraph_first_word can draw paragraph n+1 of n,
    which a rebuild from its arguments then redraws at random, so the checker would test another
    constraint than the prompt states."""
    for attempt in range(tries):
        text, args = _build(cls, iid, base, f"{seed}:{attempt}")
        if _build(cls, iid, base, "rebuild", **args)[0] == text:
            return text, args
    raise DeltaError(f"instruction {iid}: no draw in {tries} rebuilds its own text")


@functools.lru_cache(maxsize=None)
def if_prompts(split: str) -> tuple[Prompt, ...]:
    """Every prompt of `split`; `extra` holds `instruction_id_list` and `kwargs` as IFEval rows do."""
    from ..metrics.iflib import ifeval_registry

    registry, conflicts = ifeval_registry()
    out = []
    for pid, base in base_tasks(split):
        rng = random.Random(f"{SEED}:{pid}")
        ids = _draw(registry, conflicts, rng)
        parts = [_describe(registry[i], i, base, f"{SEED}:{pid}:{i}") for i in ids]
        text = " ".join([base, *(t for t, _ in parts)])
        out.append(Prompt(id=pid, text=text, category="instruction_following", split=split,
                          extra={"base": base, "instruction_id_list": ids, "kwargs": [k for _, k in parts]}))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def constraints_by_text() -> dict[str, Prompt]:
    """Every prompt of both splits by its text: how the `ifeval` judge finds a pair's constraints."""
    return {p.text: p for split in SPLITS for p in if_prompts(split)}
