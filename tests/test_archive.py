"""deltalearn archive: a run's small outputs copied without weights, checkpoints or temporaries."""

import json
from pathlib import Path

import pytest

from deltalearn.archive import archive
from deltalearn.errors import DeltaError


def _tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_archive_keeps_records_and_results_and_leaves_weights_out(tmp_path):
    run = tmp_path / "run"
    _tree(run, {
        "results.json": b"{}", "record.json": b"{}", "eval/base/mbpp.jsonl": b'{"id": 1}\n',
        "models/a/summary.json": b"{}", "models/a/record.json": b"{}",
        "models/a/final/model.safetensors": b"w" * 10, "models/a/final/config.json": b"{}",
        "models/a/checkpoints/step-2/optimizer.pt": b"o", "models/a/checkpoints/latest": b"step-2",
        "eval/base/.summary.json.x.tmp": b"half", "pairs/big.jsonl": b"x" * 200,
    })
    r = archive(run, tmp_path / "kept", max_bytes=100)
    kept = sorted(str(p.relative_to(tmp_path / "kept")) for p in (tmp_path / "kept").rglob("*") if p.is_file())
    assert kept == ["eval/base/mbpp.jsonl", "models/a/record.json", "models/a/summary.json", "record.json", "results.json"]
    why = {x["path"]: x["why"] for x in r["skipped"]}
    assert why["pairs/big.jsonl"] == "larger than 100 bytes"
    assert "weights" in why["models/a/final/config.json"] and "weights" in why["models/a/checkpoints/latest"]
    assert "temporary" in why["eval/base/.summary.json.x.tmp"]
    assert (r["copied"], r["unchanged"]) == (5, 0)

    again = archive(run, tmp_path / "kept", max_bytes=100)
    assert (again["copied"], again["unchanged"]) == (0, 5)
    (run / "results.json").write_text('{"new": 1}')
    (tmp_path / "kept" / "eval" / "other.jsonl").write_text("only in the archive\n")
    third = archive(run, tmp_path / "kept", max_bytes=100)
    assert third["copied"] == 1 and (tmp_path / "kept" / "results.json").read_text() == '{"new": 1}'
    assert (tmp_path / "kept" / "eval" / "other.jsonl").is_file()  # an archive gathers; it never deletes


def test_archive_keeps_one_copy_of_each_thing(tmp_path):
    """A pairs file's saved dataset duplicates its JSONL; a plot no report links to is not a result."""
    run = tmp_path / "run"
    _tree(run, {
        "pairs/a.jsonl": b'{"prompt": 1}\n', "pairs/a/dataset_info.json": b"{}", "pairs/a/data-00000-of-00001.arrow": b"r",
        "pairs/b/dataset_info.json": b"{}",  # no b.jsonl beside it: the only copy, kept
        "report.md": b"# r\n![gain](gain.png)\n![hist](audit/x/hist.png)\n", "gain.png": b"p", "audit/x/hist.png": b"p",
        "audit/y/hist.png": b"p", "stray.png": b"p",
        "eval/base/summary.json": b'{"suites": {}}', "eval/base/mbpp.jsonl": b"{}\n",
        "eval/base/generations.jsonl": b"{}\n", "eval/base/generations-vllm.jsonl": b"{}\n",
        "eval/base/loglik_cache.jsonl": b"{}\n",
        "answers/generations.jsonl": b"{}\n",  # a pairs stage's answers: the only copy, kept
    })
    r = archive(run, tmp_path / "kept")
    kept = sorted(str(p.relative_to(tmp_path / "kept")) for p in (tmp_path / "kept").rglob("*") if p.is_file())
    assert kept == ["answers/generations.jsonl", "audit/x/hist.png", "eval/base/mbpp.jsonl", "eval/base/summary.json",
                    "gain.png", "pairs/a.jsonl", "pairs/b/dataset_info.json", "report.md"]
    why = {x["path"]: x["why"] for x in r["skipped"]}
    assert "saved dataset of a.jsonl" in why["pairs/a/data-00000-of-00001.arrow"]
    assert why["stray.png"] == why["audit/y/hist.png"] == "a plot no report links to"
    assert all("evaluation's cache" in why[f"eval/base/{n}.jsonl"] for n in ("generations", "generations-vllm", "loglik_cache"))

    # A delta study (its data.json says so) rebuilds its pairs from its answers: none is kept, the answers are.
    (run / "data.json").write_text("{}")
    study = archive(run, tmp_path / "study")
    assert not (tmp_path / "study" / "pairs").exists() and (tmp_path / "study" / "answers" / "generations.jsonl").is_file()
    assert {x["why"] for x in study["skipped"] if x["path"].startswith("pairs/")} == {
        "a study's pairs (its data stage rebuilds them from the answers)"}


def test_archive_refuses_a_target_inside_or_around_the_source(tmp_path):
    _tree(tmp_path / "run", {"a.json": b"{}"})
    for bad in (tmp_path / "run", tmp_path / "run" / "sub", tmp_path):
        with pytest.raises(DeltaError, match="must not be"):
            archive(tmp_path / "run", bad)
    with pytest.raises(DeltaError, match="not a directory"):
        archive(tmp_path / "nothing", tmp_path / "kept")


def test_archive_command_prints_what_it_kept_and_left_out(tmp_path):
    from typer.testing import CliRunner

    from deltalearn.cli import app

    _tree(tmp_path / "run", {"results.json": b"{}", "models/a/final/model.safetensors": b"w" * 1000})
    res = CliRunner().invoke(app, ["archive", str(tmp_path / "run"), "--to", str(tmp_path / "kept")])
    assert res.exit_code == 0, res.output
    assert "1 copied, 0 unchanged" in res.output and "1 left out" in res.output
    assert "weights, checkpoint or temporary directory: 1 file(s)" in res.output
    bad = CliRunner().invoke(app, ["archive", str(tmp_path / "run"), "--to", str(tmp_path / "run" / "x")])
    assert isinstance(bad.exception, DeltaError) and "must not be" in str(bad.exception)  # main() prints it on one line


RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_an_archived_study_restores_and_its_report_comes_back(tmp_path):
    """results/ keeps study 2's three seeds without caches, saved datasets or pairs: restored, each seed's
    report is rebuilt from its records word for word, and pooling them gives the kept pool's numbers."""
    from deltalearn.studies.delta.pool import pool_delta
    from deltalearn.studies.delta.report import delta_report

    kept = json.loads((RESULTS / "wvw-distinct-pooled" / "pooled.json").read_text())
    dirs = []
    for seed in (42, 43, 44):
        src, dst = RESULTS / f"wvw-distinct-s{seed}", tmp_path / f"s{seed}"
        assert archive(src, dst)["skipped"] == []
        delta_report(dst)
        old, new = ((d / "report.md").read_text().replace("Wall time on this machine", "Wall time where it ran")
                    for d in (src, dst))
        assert new == old
        dirs.append(dst)
    p = pool_delta(dirs, metrics=kept["metrics"], versus=[(v["a"], v["b"]) for v in kept["versus"]])
    for key in ("gain", "versus", "reversed"):
        assert json.loads(json.dumps(p[key])) == kept[key]
