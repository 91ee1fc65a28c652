"""Whole-recipe validation at load: every shipped recipe loads, and each broken recipe of the corpus in
tests/broken_recipes/ fails before anything is loaded, with its expected one-line message (file, key)."""

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from deltalearn.errors import DeltaError
from deltalearn.recipes import kinds, load_any

BROKEN = sorted((Path(__file__).parent / "broken_recipes").glob("*.yaml"))


def test_the_corpus_is_large_and_covers_every_kind():
    assert len(BROKEN) >= 30
    seen = {yaml.safe_load(p.read_text().replace("{data}", "x")).get("kind") for p in BROKEN}
    assert set(kinds()) <= seen


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_each_broken_recipe_fails_with_its_message(path, tmp_path, monkeypatch):
    from deltalearn.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("validation must not load a model"))
    text = path.read_text()
    expect = re.match(r"# expect: (.*)\n", text).group(1)
    data = tmp_path / "pairs.jsonl"
    data.write_text("")  # exists: only the recipe's own mistake is reported
    recipe = tmp_path / path.name
    recipe.write_text(text.replace("{data}", str(data)))
    with pytest.raises(DeltaError) as err:
        load_any(recipe)
    lines = str(err.value).splitlines()
    assert any(re.search(expect, line) for line in lines), (expect, lines)
    assert all(line.startswith(f"{recipe}: ") for line in lines)  # every line names the file


def test_every_error_of_a_recipe_is_reported_at_once(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: delta\nconditions: [{name: a, chosen: nope, rejected: smollm2-135m}]\ndpo: {lr: 0}\n"
                      "audit: {judge: gpt}\neval: {suites: [mc_lite, bogus], gain: [mc_lite.nope]}\n")
    with pytest.raises(DeltaError) as err:
        load_any(recipe)
    keys = [re.search(r'key "([^"]+)"', line).group(1) for line in str(err.value).splitlines()]
    assert sorted(keys) == ["audit.judge", "conditions.0.chosen", "dpo.lr", "eval.gain.0", "eval.suites.1"]


def test_every_shipped_recipe_loads():
    folder = resources.files("deltalearn").joinpath("recipes")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert len(names) >= 15
    for name in names:
        data = yaml.safe_load(folder.joinpath(name).read_text())
        cfg = load_any(name, data=data, files=False)
        assert cfg.kind == data["kind"]


def test_the_cli_prints_every_problem_one_line_each(tmp_path):
    import subprocess
    import sys

    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: bold\ntrain_limit: 0\ndpo: {lr: -1}\n")
    proc = subprocess.run([sys.executable, "-m", "deltalearn.cli", "run", str(recipe)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f'deltalearn: {recipe}: key "train_limit": Input should be greater than 0',
                     f'deltalearn: {recipe}: key "dpo.lr": Input should be greater than 0']


def test_the_cli_help_lists_the_registries():
    from typer.testing import CliRunner

    from deltalearn.audit.factory import JUDGES
    from deltalearn.cli import app
    from deltalearn.evaluate.suites import SUITES
    from deltalearn.train.methods import METHODS

    runner = CliRunner()
    flat = lambda args: " ".join(runner.invoke(app, args, env={"COLUMNS": "400"}).output.split())
    assert all(m in flat(["train", "--help"]) for m in METHODS)
    assert all(j in flat(["audit", "--help"]) for j in JUDGES)
    assert all(s in flat(["eval", "--help"]) for s in SUITES)
