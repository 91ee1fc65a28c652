"""The run-directory layout is spelled in one module (rundir.py): stages ask RunDir for paths."""

import re
from pathlib import Path

from deltalearn.archive import archive
from deltalearn.rundir import LadderDir, RunDir, suite_items

ROOT = Path(__file__).resolve().parents[1] / "src" / "deltalearn"
# A path join onto one of the layout's folder or file names, e.g. `out / "eval"` or `d / f"{s}.jsonl"`
# (a model folder's own config.json is Hugging Face's layout, and the model cache is not a run directory).
LAYOUT = re.compile(r'/ (?:"(?:eval|models|pairs|audit|generations|data|final|checkpoints|tensorboard|summary\.json|'
                    r'results\.json|data\.json|report\.md|record\.json|ladder\.json|ladder\.md|measure\.json)"'
                    r'|f"\{[\w.]+\}\.jsonl")|"(?:generations|loglik_cache)[^"]*\.jsonl"')


def test_no_module_but_rundir_spells_the_layout():
    owners = {"rundir.py", "archive.py"}  # the layout, and the archive rules RunDir.archive applies
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f in ROOT.rglob("*.py") if f.name not in owners
            for i, line in enumerate(f.read_text().splitlines(), 1) if LAYOUT.search(line) and "cache_dir()" not in line]
    assert not hits, "\n".join(hits)


def test_rundir_paths(tmp_path):
    run = RunDir(tmp_path)
    assert run.eval() == tmp_path / "eval" / "base" and run.suite("a_over_b", "mbpp") == suite_items(run.eval("a_over_b"), "mbpp")
    assert run.weights("c") == tmp_path / "models" / "c" / "final" and run.answers("t") == tmp_path / "generations" / "t.jsonl"
    assert not run.trained("c") and not run.restored("c")
    run.model("c").mkdir(parents=True)
    (run.model("c") / "summary.json").write_text("{}")
    assert run.trained("c") and run.restored("c")  # a summary without weights: copied back from an archive
    run.weights("c").mkdir()
    for name in ("config.json", "model.safetensors"):
        (run.weights("c") / name).write_text("{}")
    assert not run.restored("c")
    assert LadderDir(tmp_path).measure("t") == tmp_path / "t" / "measure.json"


def test_archive_round_trip_through_rundir(tmp_path):
    run = RunDir(tmp_path / "run")
    run.eval().mkdir(parents=True)
    (run.eval() / "summary.json").write_text('{"suites": {}}')
    run.weights("c").mkdir(parents=True)
    (run.weights("c") / "model.safetensors").write_bytes(b"x")
    (run.model("c") / "summary.json").write_text("{}")
    archive(run.root, tmp_path / "kept")
    back = RunDir(tmp_path / "back")
    archive(tmp_path / "kept", back.root)
    assert back.evaluated() and back.restored("c")
