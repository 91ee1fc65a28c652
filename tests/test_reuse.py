"""Finished work is reused only when its inputs match exactly: every kind of change to a finished study
is refused with the key and both values, or redone where the recipe says `on_change: rerun`."""

import json

import pytest

from deltalearn import record
from deltalearn.errors import DeltaError
from deltalearn.studies.delta.study import DeltaStudy, run_delta
from conftest import write_jsonl


def test_differences_name_dotted_keys_and_skip_settings_added_at_their_default():
    old = {"train_limit": 48, "dpo": {"lr": 5e-5, "beta": 5.0}, "seed": 42}
    new = {"train_limit": 24, "dpo": {"lr": 2e-5, "beta": 5.0}, "seed": 42, "added": 0}
    diffs = record.differences(old, new, defaults={"added": 0})
    assert diffs == [("dpo.lr", 5e-5, 2e-5), ("train_limit", 48, 24)]
    assert record.describe(diffs) == "dpo.lr 5e-05 -> 2e-05, train_limit 48 -> 24"
    assert record.differences(old, {**new, "added": 1}, defaults={"added": 0})[0] == ("added", None, 1)


def test_check_reuses_resumes_refuses_or_reruns(tmp_path):
    assert record.check(tmp_path, "x", {"a": 1}) == "new"
    record.mark(tmp_path, "x", {"a": 1}, "started")
    assert record.check(tmp_path, "x", {"a": 1}) == "started"
    record.mark(tmp_path, "x", {"a": (1, 2)}, "done")  # tuples are stored as lists and still match
    assert record.check(tmp_path, "x", {"a": (1, 2)}) == "done"
    with pytest.raises(DeltaError, match=r"holds x made with other inputs \(a \[1, 2\] -> 3\); use another out_dir"):
        record.check(tmp_path, "x", {"a": 3})
    cleared = []
    assert record.check(tmp_path, "x", {"a": 3}, "rerun", clear=lambda: cleared.append(1)) == "new"
    assert cleared == [1] and "x" not in record.read(tmp_path)
    with pytest.raises(DeltaError, match="no record of its inputs"):
        record.check(tmp_path, "y", {"a": 1}, legacy=True)


# --- a finished tiny delta study, then every kind of change -------------------------------------------------

def _spec(tiny, out):
    return {
        "out_dir": str(out), "student": {"name": "t4", "model": tiny},
        "ladder": {"tiers": [{"name": "t4", "model": tiny}, {"name": "t2", "model": tiny, "degrade": {"drop_layers": [1, 2]}}]},
        "prompts": {"split": "train", "limit": 8}, "generate": {"batch_size": 4, "settings": {"max_new_tokens": 8}},
        "conditions": [{"name": "a", "chosen": "t4", "rejected": "t2"}],
        "audit": {"judge": "loglik"}, "eval": {"suites": ["mc_lite"], "limit": 4, "gain": ["mc_lite.acc"]},
        "dpo": {"lr": 1e-3, "global_batch_size": 4, "max_length": 128},
    }


@pytest.fixture
def finished(tmp_path, tiny_model_dir):
    spec = _spec(str(tiny_model_dir), tmp_path / "run")
    run_delta(DeltaStudy.model_validate(spec))
    return spec, tmp_path / "run"


def _weights(run):
    return {p: p.stat().st_mtime_ns for p in run.rglob("model.safetensors")}


@pytest.mark.parametrize("change, named", [
    ({"prompts": {"split": "train", "limit": 6}}, "prompts.limit 8 -> 6"),
    ({"filters": {"drop_truncated": True}}, "filters.drop_truncated false -> true"),
    ({"audit": {"judge": "length_words"}}, "audit.judge loglik -> length_words"),
    ({"eval": {"suites": ["mc_lite"], "limit": 3, "gain": ["mc_lite.acc"]}}, "eval.limit 4 -> 3"),
    ({"seed": 7}, "seed 42 -> 7"),
    ({"dpo": {"lr": 2e-3, "global_batch_size": 4, "max_length": 128}}, "dpo.lr 0.001 -> 0.002"),
    ({"generate": {"batch_size": 4, "settings": {"max_new_tokens": 6}}}, "generate.settings.max_new_tokens 8 -> 6"),
])
def test_a_changed_study_is_refused_before_any_work_naming_the_key(finished, change, named, monkeypatch):
    spec, run = finished
    before = _weights(run)
    from deltalearn.generate import run as gen

    monkeypatch.setattr(gen, "make_backend", lambda *a, **k: pytest.fail("a refused study must not load a model"))
    with pytest.raises(DeltaError, match=rf"run: holds a delta study made with other inputs \({named}"):
        run_delta(DeltaStudy.model_validate({**spec, **change}))
    assert _weights(run) == before


def test_bookkeeping_changes_reuse_everything(finished):
    spec, run = finished
    before = _weights(run)
    s = run_delta(DeltaStudy.model_validate({**spec, "name": "renamed", "generate": {"batch_size": 2, "settings": {"max_new_tokens": 8}},
                                             "dpo": {**spec["dpo"], "micro_batch_size": 1,
                                                     "options": {"save_every": 1, "keep_checkpoints": 1}}}))
    assert _weights(run) == before and all(g["generated"] == 0 for g in s["generation"])
    # a record from before these keys were bookkeeping holds them: still no difference
    rec = json.loads((run / "record.json").read_text())
    rec["study"]["inputs"].update({"dpo.micro_batch_size": 2, "dpo.options.save_every": 3})
    (run / "record.json").write_text(json.dumps(rec))
    run_delta(DeltaStudy.model_validate(spec))
    assert _weights(run) == before


def test_rerun_redoes_only_what_the_change_touches(finished):
    spec, run = finished
    models = _weights(run)
    evals = (run / "eval" / "a" / "mc_lite.jsonl").stat().st_mtime_ns
    s = run_delta(DeltaStudy.model_validate({**spec, "on_change": "rerun",
                                             "eval": {"suites": ["mc_lite"], "limit": 3, "gain": ["mc_lite.acc"]}}))
    assert _weights(run) == models  # the trainings' inputs did not change: reused
    assert (run / "eval" / "a" / "mc_lite.jsonl").stat().st_mtime_ns != evals
    assert s["results"]["a"]["metrics"]["mc_lite.acc"]["ci95"] is not None
    assert len([json.loads(l) for l in (run / "eval" / "a" / "mc_lite.jsonl").read_text().splitlines()]) == 3
    # and the record now holds the new settings: the same recipe without rerun is a plain reuse
    run_delta(DeltaStudy.model_validate({**spec, "eval": {"suites": ["mc_lite"], "limit": 3, "gain": ["mc_lite.acc"]}}))
    s = run_delta(DeltaStudy.model_validate({**spec, "on_change": "rerun", "dpo": {**spec["dpo"], "lr": 2e-3}}))
    assert _weights(run) != models  # the training's inputs changed: retrained
    assert json.loads((run / "models" / "a" / "summary.json").read_text())["steps"] == 2


# --- the stage records under the study's: a changed pairs file, a changed model ----------------------------

def _train_cfg(tmp_path, model_dir, data, **kw):
    from deltalearn.train.config import TrainConfig

    return TrainConfig.model_validate({"out_dir": str(tmp_path / "run"), "model": {"name": "tiny", "model": str(model_dir)},
                                       "data": str(data), "beta": 1.0, "lr": 0.01, "global_batch_size": 4, "max_length": 64,
                                       "tracker": "none", "max_steps": 1, **kw})


def _pairs(n, text="The sky is blue."):
    return [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": text}],
             "rejected": [{"role": "assistant", "content": "fox dog"}]} for i in range(n)]


def test_a_pairs_file_changed_in_place_is_refused(tmp_path, tiny_model_dir):
    from deltalearn.train.loop import train

    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(8))
    train(_train_cfg(tmp_path, tiny_model_dir, data))
    assert train(_train_cfg(tmp_path, tiny_model_dir, data))["steps"] == 1  # same content: reused
    write_jsonl(data, _pairs(8, "The sea is green."))  # same path, other content
    with pytest.raises(DeltaError, match=r"holds a training run made with other inputs \(data_sha256 [0-9a-f]+ -> [0-9a-f]+\)"):
        train(_train_cfg(tmp_path, tiny_model_dir, data))
    assert train(_train_cfg(tmp_path, tiny_model_dir, data, on_change="rerun"))["steps"] == 1


def test_a_model_changed_in_place_is_refused(tmp_path, tiny_model_dir):
    import shutil

    from safetensors.torch import load_file, save_file

    from deltalearn.train.loop import train

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(8))
    train(_train_cfg(tmp_path, model, data))
    w = load_file(str(model / "model.safetensors"))
    name = sorted(w)[len(w) // 2]  # a tensor in the middle of the file: a sampled hash would miss it
    w[name] = w[name] + 0.01
    save_file(w, str(model / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(DeltaError, match=r"holds a training run made with other inputs \(model_fingerprint"):
        train(_train_cfg(tmp_path, model, data))


def test_the_bold_study_refuses_another_train_limit_and_reruns_when_asked(tmp_path, tiny_model_dir):
    from deltalearn.studies.bold.study import BoldStudy, run_bold

    spec = {"out_dir": str(tmp_path / "run"), "student": {"name": "tiny", "model": str(tiny_model_dir)},
            "train_limit": 8, "test_limit": 3, "answer_max_new_tokens": 24, "eval_max_new_tokens": 8, "batch_size": 4,
            "warmup": None, "dpo": {"lr": 1e-3, "global_batch_size": 4, "max_length": 128},
            "conditions": ["dpo_3_over_2"]}
    first = run_bold(BoldStudy.model_validate(spec))
    with pytest.raises(DeltaError, match=r"run: holds a bold study made with other inputs \(train_limit 8 -> 4\)"):
        run_bold(BoldStudy.model_validate({**spec, "train_limit": 4}))
    again = run_bold(BoldStudy.model_validate({**spec, "train_limit": 4, "on_change": "rerun"}))
    assert 4 < first["train_pairs"] <= 8 and again["train_pairs"] <= 4  # answers too short for 3 sections are left out
    summary = json.loads((tmp_path / "run" / "models" / "dpo_3_over_2" / "summary.json").read_text())
    assert summary["usable_pairs"] == again["train_pairs"]


def test_a_run_directory_from_before_records_is_not_reused(tmp_path, tiny_model_dir):
    from deltalearn.train.loop import train

    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(8))
    train(_train_cfg(tmp_path, tiny_model_dir, data))
    (tmp_path / "run" / record.RECORD).unlink()  # as an older version left it
    with pytest.raises(DeltaError, match="no record of its inputs"):
        train(_train_cfg(tmp_path, tiny_model_dir, data))


def _broken_line_2(path):
    good = json.dumps(_pairs(1)[0])
    path.write_text(good + "\n{not json\n")


def _missing_field(path):
    row = _pairs(1)[0]
    del row["rejected"]
    write_jsonl(path, [row])


BAD_STARTS = {  # a start that fails on its input, before any step: the fixed rerun must not be refused
    "invalid JSON": (_broken_line_2, "line 2"),
    "empty file": (lambda p: p.write_text(""), "no pairs"),
    "missing field": (_missing_field, 'field "rejected": missing'),
    "binary file": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), "pairs.jsonl"),
}


@pytest.mark.parametrize("kind", BAD_STARTS)
def test_a_failed_start_leaves_nothing_that_refuses_the_fixed_rerun(kind, tmp_path, tiny_model_dir):
    from deltalearn.train.loop import train

    data = tmp_path / "pairs.jsonl"
    breaks, message = BAD_STARTS[kind]
    breaks(data)
    with pytest.raises(DeltaError, match=message):
        train(_train_cfg(tmp_path, tiny_model_dir, data))
    write_jsonl(data, _pairs(8))  # fixed: the same command again
    assert train(_train_cfg(tmp_path, tiny_model_dir, data))["steps"] == 1


def test_a_bad_model_config_fails_and_the_fixed_rerun_trains(tmp_path, tiny_model_dir):
    import shutil

    from deltalearn.train.loop import train

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    good = (model / "config.json").read_text()
    (model / "config.json").write_text("{\"model_type\": \"llama\", \"hidden_size\": ")
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(8))
    with pytest.raises(Exception):
        train(_train_cfg(tmp_path, model, data))
    (model / "config.json").write_text(good)
    assert train(_train_cfg(tmp_path, model, data))["steps"] == 1


def test_a_started_run_with_a_checkpoint_is_still_protected(tmp_path, tiny_model_dir):
    """Only a claim that left nothing is replaced: a run with a checkpoint to resume is refused."""
    from deltalearn.train.loop import train

    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(8))
    cfg = _train_cfg(tmp_path, tiny_model_dir, data, max_steps=2, save_every=1)
    train(cfg)
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    rec["train"]["state"] = "started"  # as if killed after its first checkpoint
    (tmp_path / "run" / "record.json").write_text(json.dumps(rec))
    write_jsonl(data, _pairs(8, "The sea is green."))
    with pytest.raises(DeltaError, match="other inputs"):
        train(_train_cfg(tmp_path, tiny_model_dir, data, max_steps=2, save_every=1))
