"""`deltalearn pairs`: prompts -> every tier's answers -> preference datasets, with a manifest."""

from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from ..generate.prompts import load_prompts
from ..generate.run import generate_ladder
from ..io import fingerprint, write_json_atomic
from ..rundir import MANIFEST, RunDir
from .dataset import build_pairs, write_pairs
from .strategies import check_tier_names, plan_pairs


def run_pairs(recipe, *, console=None) -> dict:
    out = Path(recipe.out_dir)
    t0 = time.perf_counter()
    check_tier_names(recipe.pairs, recipe.ladder.names)
    p = recipe.prompts
    prompts = load_prompts(p.source, column=p.column, id_column=p.id_column, category_column=p.category_column,
                           split=p.split, limit=p.limit)
    generations, gen_stats = generate_ladder(recipe.ladder, prompts, recipe.generate, out, console=console)
    sizes = {s["tier"]: s["size"] for s in gen_stats}
    specs = plan_pairs(recipe.pairs, sizes)
    datasets = []
    for spec in specs:
        rows, summary = build_pairs(spec, generations, recipe.pairs.filters)
        summary.update(write_pairs(rows, RunDir(out).pairs(spec.name)))
        datasets.append(summary)
    manifest = {
        "deltalearn": __version__,
        "recipe": recipe.model_dump(),
        "recipe_fingerprint": fingerprint(recipe.model_dump()),
        "prompts": len(prompts),
        "generation": gen_stats,
        "datasets": datasets,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
