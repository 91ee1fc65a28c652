import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from deltalearn.errors import DeltaError
from deltalearn.io import read_jsonl
from deltalearn.train import loop as loop_mod
from deltalearn.train.batching import apply_length_policy, tokenize_dataset
from deltalearn.train.checkpoint import latest_checkpoint, save_checkpoint
from deltalearn.train.config import TrainConfig
from deltalearn.train.flops import PeakProbe
from deltalearn.train.loop import cosine_with_floor, done_with, train
from conftest import write_jsonl


def synthetic_pairs(n=24):
    """A learnable preference: the chosen answer is always about the sky, the rejected about a fox."""
    rows = []
    for i in range(n):
        rows.append({
            "prompt": [{"role": "user", "content": f"question number {i}"}],
            "chosen": [{"role": "assistant", "content": "The sky is blue. " * (1 + i % 3)}],
            "rejected": [{"role": "assistant", "content": "fox dog fox " * (1 + i % 2)}],
            "split": "train" if i < n - 4 else "test",
        })
    return rows


@pytest.fixture
def pairs_file(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs())


def cfg(tmp_path, model_dir, data, **kw):
    base = dict(out_dir=str(tmp_path / "run"), model={"name": "tiny", "model": str(model_dir)}, data=str(data),
                method="dpo_norm", beta=1.0, lr=0.01, global_batch_size=4, micro_batch_size=2, max_length=64,
                warmup_ratio=0.0, tracker="none")
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_cosine_schedule_with_warmup_and_floor():
    f = cosine_with_floor(total=100, warmup=3, floor=0.1)
    assert [round(f(s), 6) for s in (0, 1, 2)] == [round(1 / 3, 6), round(2 / 3, 6), 1.0]
    assert f(3) == pytest.approx(1.0)
    assert f(3 + 97 // 2) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (97 // 2) / 97)))
    assert f(100) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_reward_accuracy_rises_on_a_learnable_preference(tmp_path, tiny_model_dir, pairs_file):
    summary = train(cfg(tmp_path, tiny_model_dir, pairs_file, data_split="train", epochs=2))
    hist = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["usable_pairs"] == 20 and summary["steps"] == len(hist) == 10
    assert hist[0]["rewards/accuracy"] == 0.0 and hist[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference
    assert min(h["rewards/accuracy"] for h in hist[-3:]) == 1.0
    assert hist[-1]["loss"] < 0.5 * math.log(2)
    assert all(h["rewards/chosen"] > h["rewards/rejected"] for h in hist[1:])
    for key in ("grad_norm", "lr", "tokens_per_s", "mfu", "logps/accuracy", "rewards/margin"):
        assert key in hist[-1]
    # MFU per step is against that step's own probed peak; the run's best probe is the stricter figure
    for h in hist:
        assert h["mfu"] == pytest.approx(h["flops"] / h["seconds"] / h["matmul_peak"]) and h["flops"] > 0
    assert summary["matmul_peak_flops"] >= max(h["matmul_peak"] for h in hist)  # the best probe; a step has the mean of two
    assert summary["mfu_vs_best_peak"] == pytest.approx(
        sum(h["flops"] for h in hist) / sum(h["seconds"] for h in hist) / summary["matmul_peak_flops"])
    final = tmp_path / "run" / "final"
    assert (final / "model.safetensors").is_file() and (final / "tokenizer_config.json").is_file()
    assert json.loads((final / "config.json").read_text())["use_cache"] is True  # generation from it keeps its KV cache
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method"] == "dpo_norm"
    assert (torch.tensor([1e-37]) * torch.tensor([1e-3])).item() == 0.0  # CPU training flushes denormals to zero


def test_the_peak_probe_times_its_fastest_matmul_and_leaves_the_random_state_alone(monkeypatch):
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    probe = PeakProbe("cpu", torch.float32, n_max=256, target_s=10.0)  # never fast enough: stops at n_max
    assert probe.n == 256 and probe() > 0
    assert torch.equal(torch.rand(4), expected)
    assert PeakProbe("cpu", torch.float32, target_s=0.0).n == 128  # any time is enough: the smallest n
    times = iter([0.5, 0.25, 1.0, 0.3, 0.4])
    monkeypatch.setattr(probe, "_once", lambda: next(times))
    assert probe() == pytest.approx(2 * 256**3 / 0.25)


def test_reference_logps_are_cached_and_reused(tmp_path, tiny_model_dir, pairs_file):
    s1 = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=1))
    s2 = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=1, out_dir=str(tmp_path / "run2")))
    assert s1["reference"]["cached"] is False and s2["reference"]["cached"] is True
    assert s1["reference"]["path"] == s2["reference"]["path"]
    s3 = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=1, max_length=40, out_dir=str(tmp_path / "run3")))
    assert s3["reference"]["path"] != s1["reference"]["path"]  # tokenisation settings are in the key
    assert train(cfg(tmp_path, tiny_model_dir, pairs_file, method="simpo", max_steps=1, out_dir=str(tmp_path / "r4")))["reference"] is None


def test_a_sequence_already_scored_for_another_dataset_is_not_computed_again(tmp_path, tiny_model_dir, monkeypatch):
    """DPO 3>2, its reverse and the 3>3 control share answers: each distinct sequence gets one forward pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deltalearn.train.refcache import compute_reference, sequence_values

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = synthetic_pairs(8)
    swapped = [r | {"chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    a = tokenize_dataset(tok, rows)
    fresh = compute_reference(model, tokenize_dataset(tok, swapped), tok.pad_token_id, micro=2, chunk=7)
    ref_c, ref_r = compute_reference(model, a, tok.pad_token_id, micro=2, chunk=7)
    known = sequence_values(a, ref_c, ref_r)
    seen = []
    model.get_input_embeddings().register_forward_hook(lambda *x: seen.append(1))
    again = compute_reference(model, tokenize_dataset(tok, swapped), tok.pad_token_id, micro=2, chunk=7, known=known)
    for x, y in zip(again, fresh):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-6)
    assert not seen

    # Through the loop: the reversed dataset reuses every sequence and trains the same first step.
    (tmp_path / "rev").mkdir()
    rev_file = write_jsonl(tmp_path / "rev" / "pairs.jsonl", [
        r | {"chosen": r["rejected"], "rejected": r["chosen"]} for r in synthetic_pairs()])
    fwd_file = write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs())
    monkeypatch.setenv("DELTALEARN_CACHE", str(tmp_path / "cache"))
    train(cfg(tmp_path, tiny_model_dir, fwd_file, max_steps=1, out_dir=str(tmp_path / "fwd")))
    shared = train(cfg(tmp_path, tiny_model_dir, rev_file, max_steps=1, out_dir=str(tmp_path / "rev-run")))
    assert shared["reference"]["reused_sequences"] == 2 * 24  # every pair, both sides
    monkeypatch.setenv("DELTALEARN_CACHE", str(tmp_path / "cache-alone"))
    alone = train(cfg(tmp_path, tiny_model_dir, rev_file, max_steps=1, out_dir=str(tmp_path / "rev-alone")))
    assert alone["reference"]["reused_sequences"] == 0
    a, b = read_jsonl(tmp_path / "rev-run" / "metrics.jsonl"), read_jsonl(tmp_path / "rev-alone" / "metrics.jsonl")
    assert a[0]["loss"] == pytest.approx(b[0]["loss"], rel=1e-5)


def test_resume_after_a_crash_gives_the_same_loss_trajectory(tmp_path, tiny_model_dir, pairs_file, monkeypatch):
    ref = train(cfg(tmp_path, tiny_model_dir, pairs_file, out_dir=str(tmp_path / "straight"), save_every=2))
    straight = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    real_collate, calls = loop_mod.collate, {"n": 0}

    def crashing_collate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 1:  # in step 4, after the checkpoint of step 2 and the metrics of step 3
            raise KeyboardInterrupt
        return real_collate(*a, **k)

    monkeypatch.setattr(loop_mod, "collate", crashing_collate)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path, tiny_model_dir, pairs_file, out_dir=str(tmp_path / "resumed"), save_every=2))
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "step-0000002"
    assert len(read_jsonl(tmp_path / "resumed" / "metrics.jsonl")) == 3
    monkeypatch.setattr(loop_mod, "collate", real_collate)
    summary = train(cfg(tmp_path, tiny_model_dir, pairs_file, out_dir=str(tmp_path / "resumed"), save_every=2))
    assert summary["resumed_from"] == 2 and summary["steps"] == ref["steps"] == 6
    resumed = read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, resumed):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6) and a["lr"] == b["lr"]
        assert a["rewards/margin"] == pytest.approx(b["rewards/margin"], abs=1e-6)


def test_a_changed_recipe_never_resumes_another_runs_checkpoint(tmp_path, tiny_model_dir, pairs_file, monkeypatch):
    real_collate, calls = loop_mod.collate, {"n": 0}

    def crashing_collate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 1:
            raise KeyboardInterrupt
        return real_collate(*a, **k)

    monkeypatch.setattr(loop_mod, "collate", crashing_collate)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path, tiny_model_dir, pairs_file, save_every=2))
    monkeypatch.setattr(loop_mod, "collate", real_collate)
    with pytest.raises(DeltaError, match=r"run/?: holds a training run made with other inputs \(beta 1.0 -> 2.0, lr 0.01 -> 0.02\)"):
        train(cfg(tmp_path, tiny_model_dir, pairs_file, save_every=2, lr=0.02, beta=2.0))
    # bookkeeping settings may change: the run resumes, here with 1 pair per micro-batch instead of 2,
    # and follows the uninterrupted run's trajectory (each step's gradient is the same sum)
    assert train(cfg(tmp_path, tiny_model_dir, pairs_file, save_every=3, tracker="tensorboard",
                     micro_batch_size=1))["resumed_from"] == 2
    train(cfg(tmp_path, tiny_model_dir, pairs_file, out_dir=str(tmp_path / "whole")))
    resumed, whole = read_jsonl(tmp_path / "run" / "metrics.jsonl"), read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] and len(whole) > 2
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in whole], rel=1e-5)


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    root = tmp_path / "ckpt"
    save_checkpoint(root, 1, model, opt, sched, {"step": 1}, keep=2)
    real_save = torch.save

    def dying_save(obj, path, *a, **k):
        if str(path).endswith("scheduler.pt"):
            raise SystemExit("killed")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(SystemExit):
        save_checkpoint(root, 2, model, opt, sched, {"step": 2}, keep=2)
    latest = latest_checkpoint(root)
    assert latest.name == "step-0000001" and json.loads((latest / "state.json").read_text()) == {"step": 1}
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000001"]  # no partial directory left


def test_nan_loss_stops_with_a_clear_error_and_keeps_last_checkpoint(tmp_path, tiny_model_dir, pairs_file, monkeypatch):
    real, calls = loop_mod.pair_losses, {"n": 0}

    def nan_on_step_2(*a, **k):
        calls["n"] += 1
        loss, rc, rr = real(*a, **k)
        return (loss * float("nan"), rc, rr) if calls["n"] > 2 else (loss, rc, rr)

    monkeypatch.setattr(loop_mod, "pair_losses", nan_on_step_2)
    with pytest.raises(DeltaError, match=r"step 2: loss is nan; stopped before the update. The last good checkpoint is kept"):
        train(cfg(tmp_path, tiny_model_dir, pairs_file, save_every=1))
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-0000001"
    assert not (tmp_path / "run" / "final").exists()


def test_length_policy_truncates_or_drops_and_counts(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = tokenize_dataset(tok, synthetic_pairs(6))
    longest = max(tp.length for tp in pairs)
    kept, counts = apply_length_policy(pairs, longest - 3, "truncate")
    assert len(kept) == 6 and counts["truncated"] >= 1 and all(tp.length <= longest - 3 for tp in kept)
    kept, counts = apply_length_policy(pairs, longest - 3, "drop")
    assert counts["dropped"] == 6 - len(kept) >= 1


def test_bad_datasets_are_rejected_with_the_row(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    rows = synthetic_pairs(3)
    del rows[1]["rejected"]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DeltaError, match=r'bad.jsonl line 2: field "rejected": missing'):
        train(cfg(tmp_path, tiny_model_dir, bad))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    # a template that renders the generation prompt differently from an answered turn
    tok.chat_template = tok.chat_template.replace("{{ '<|im_start|>assistant\\n' }}", "{{ '<|im_start|>assistant:\\n' }}")
    with pytest.raises(DeltaError, match=r'pairs line 1: field "chosen": the chat template renders the prompt differently'):
        tokenize_dataset(tok, synthetic_pairs(2))


def test_logits_are_never_materialised_for_the_whole_batch(tmp_path, tiny_model_dir, pairs_file, monkeypatch):
    shapes = []
    real_mm = torch.mm

    def spy(a, b, *args, **kw):
        y = real_mm(a, b, *args, **kw)
        if 300 < y.shape[-1] < 1000:  # the LM head (vocab ~400); hidden layers are 32/64 wide
            shapes.append(tuple(y.shape))
        return y

    monkeypatch.setattr(loop_mod, "PeakProbe", lambda *a, **k: (lambda: 1e11))  # its square matmuls are not the head's
    monkeypatch.setattr(torch, "mm", spy)
    train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=2, logprob_chunk=16))
    assert shapes and all(len(s) == 2 and s[0] <= 16 for s in shapes), [s for s in shapes if len(s) != 2 or s[0] > 16]


@pytest.mark.parametrize("n,chunk", [(259, 256), (256, 256), (1, 256), (10, 4), (1000, 7), (5, 1)])
def test_head_spans_cover_every_row_in_near_equal_chunks(n, chunk):
    from deltalearn.scoring.logprobs import _spans

    spans = _spans(n, chunk)
    assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    sizes = [e - s for s, e in spans]
    assert max(sizes) <= chunk and max(sizes) - min(sizes) <= 1 and len(spans) == -(-n // chunk)


@pytest.mark.parametrize("keep_bytes", [0, 2**24])  # recompute the softmax in backward, or keep it from forward
def test_fused_head_equals_the_checkpointed_head(tiny_model_dir, monkeypatch, keep_bytes):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deltalearn.scoring import logprobs
    from deltalearn.train.batching import collate

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    mb = collate(tokenize_dataset(tok, synthetic_pairs(4)), tok.pad_token_id)
    results = []
    kept = []
    real_apply = logprobs.HeadLogps.apply
    monkeypatch.setattr(logprobs.HeadLogps, "apply", lambda *a: kept.append(a[4]) or real_apply(*a))
    for plain in (True, False):
        monkeypatch.setattr(logprobs, "_plain_head", lambda head, plain=plain: plain)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        sums, lens = logprobs.response_logps(model, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=5,
                                             keep_bytes=keep_bytes)
        (sums * torch.arange(1, 9)).sum().backward()  # different weights per row
        results.append((sums.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert kept == [keep_bytes]
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-6)
    for n in results[0][1]:
        torch.testing.assert_close(results[0][1][n], results[1][1][n], atol=1e-5, rtol=1e-4, msg=n)


def test_lora_trains_only_the_adapter(tmp_path, tiny_model_dir, pairs_file):
    from safetensors.torch import load_file

    summary = train(cfg(tmp_path, tiny_model_dir, pairs_file, lora={"r": 4, "alpha": 8}, lr=0.05, epochs=3))
    final = tmp_path / "run" / "final"
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert summary["last"]["rewards/accuracy"] == 1.0


def test_a_lora_run_is_reused_and_loads_as_its_merged_model(tmp_path, tiny_model_dir, pairs_file):
    """The adapter directory is a model like any other: a rerun reuses it, evaluation loads base + B@A."""
    from safetensors.torch import load_file

    from deltalearn.models import TierSpec, load_model
    from deltalearn.models.loading import materialise, tier_fingerprint

    c = cfg(tmp_path, tiny_model_dir, pairs_file, lora={"r": 4, "alpha": 8}, lr=0.05, epochs=2)
    first = train(c)
    assert train(c) == first  # recorded as done with its adapter: not trained again
    final = tmp_path / "run" / "final"
    trained, base = load_model(TierSpec(name="trained", model=str(final))), load_model(TierSpec(name="b", model=str(tiny_model_dir)))
    adapter = load_file(str(final / "adapter_model.safetensors"))
    a_key = next(k for k in adapter if k.endswith("layers.0.self_attn.q_proj.lora_A.weight"))
    delta = adapter[a_key.replace("lora_A", "lora_B")] @ adapter[a_key] * (8 / 4)
    name = "model.layers.0.self_attn.q_proj.weight"
    merged, start = trained.model.state_dict()[name], base.model.state_dict()[name]
    assert delta.abs().max() > 1e-4 and torch.allclose(merged, start + delta, atol=1e-5)
    assert not any("lora_" in k for k in trained.model.state_dict())
    assert trained.fingerprint == tier_fingerprint(TierSpec(name="again", model=str(final))) != base.fingerprint
    merged_dir = Path(materialise(TierSpec(name="trained", model=str(final))))  # what vLLM would load
    assert (merged_dir / "config.json").is_file()
    assert torch.equal(load_file(str(merged_dir / "model.safetensors"))[name], merged)


@pytest.mark.parametrize("method", ["dpo", "ipo", "simpo", "sft"])
def test_every_method_runs_and_moves_the_right_way(tmp_path, tiny_model_dir, pairs_file, method):
    train(cfg(tmp_path, tiny_model_dir, pairs_file, method=method, beta=0.5, epochs=2, data_split="train"))
    hist = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert hist[-1]["loss"] < hist[0]["loss"]
    if method != "sft":
        assert hist[-1]["logps/accuracy"] == 1.0  # the policy itself now prefers chosen


@pytest.mark.parametrize("lean", [False, True])
def test_two_processes_match_one(tmp_path, tiny_model_dir, pairs_file, lean):
    recipe = {"kind": "train", "model": {"name": "tiny", "model": str(tiny_model_dir)}, "data": str(pairs_file),
              "method": "dpo_norm", "beta": 1.0, "lr": 0.01, "global_batch_size": 4, "micro_batch_size": 1,
              "max_length": 64, "warmup_ratio": 0.0, "tracker": "none", "max_steps": 4, "lean_mlp": lean}
    runs = {}
    for procs in (1, 2):
        r = dict(recipe, out_dir=str(tmp_path / f"p{procs}"))
        path = tmp_path / f"r{procs}.yaml"
        path.write_text(yaml.safe_dump(r))
        # accelerate's --cpu launcher starts one process unless MPI is installed; its torchrun-based
        # launcher (--multi_gpu) starts real processes, which run as MULTI_CPU over gloo without a GPU.
        launcher = ["--multi_gpu", "--num_processes", str(procs)] if procs > 1 else ["--cpu", "--num_processes", "1"]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "deltalearn.cli", "train", str(path)]
        # each run its own cache: the 2-process run computes its reference pass split across processes
        env = {**__import__("os").environ, "DELTALEARN_CACHE": str(tmp_path / f"cache{procs}")}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[procs] = read_jsonl(tmp_path / f"p{procs}" / "metrics.jsonl")
        summary = json.loads((tmp_path / f"p{procs}" / "summary.json").read_text())
        assert summary["processes"] == procs and summary["reference"]["cached"] is False
        assert summary["lean_mlps"] == (4 if lean else 0)  # under DDP too: its gradients go through autograd
    assert len(runs[1]) == len(runs[2]) == 4
    for a, b in zip(runs[1], runs[2]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        assert a["rewards/accuracy"] == b["rewards/accuracy"]


def test_gradient_checkpointing_gives_the_same_trajectory(tmp_path, tiny_model_dir, pairs_file):
    train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "plain")))
    train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "ckpt"), gradient_checkpointing=True))
    a = read_jsonl(tmp_path / "plain" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "ckpt" / "metrics.jsonl")
    assert [round(r["loss"], 5) for r in a] == [round(r["loss"], 5) for r in b]
    assert a[-1]["grad_norm"] == pytest.approx(b[-1]["grad_norm"], rel=1e-4)


def test_optimizer_state_made_at_set_up_gives_the_same_trajectory(tmp_path, tiny_model_dir, pairs_file, monkeypatch):
    from safetensors.torch import load_file

    from deltalearn.train import loop
    from deltalearn.train.speedups import allocate_optimizer_state

    made = []
    monkeypatch.setattr(loop, "allocate_optimizer_state", lambda opt: made.append(len(opt.state)) or allocate_optimizer_state(opt))
    train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, weight_decay=0.1, out_dir=str(tmp_path / "early")))
    assert made == [0]
    monkeypatch.setattr(loop, "allocate_optimizer_state", lambda opt: None)
    train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, weight_decay=0.1, out_dir=str(tmp_path / "lazy")))
    a, b = (read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("early", "lazy"))
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and [r["grad_norm"] for r in a] == [r["grad_norm"] for r in b]
    wa, wb = (load_file(str(tmp_path / d / "final" / "model.safetensors")) for d in ("early", "lazy"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_allocated_optimizer_state_is_what_the_first_step_makes():
    from deltalearn.train.speedups import allocate_optimizer_state

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    before = w.detach().clone()
    opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.5, fused=True)
    allocate_optimizer_state(opt)
    st = opt.state[w]
    assert torch.equal(w.detach(), before) and w.grad is None and opt.param_groups[0]["lr"] == 0.1
    assert float(st["step"]) == 0 and not st["exp_avg"].any() and not st["exp_avg_sq"].any()


def test_freed_memory_is_kept_on_linux_glibc():
    import platform

    from deltalearn.train.malloc import keep_freed_memory

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True
    else:
        assert keep_freed_memory() is False


def test_a_tied_embedding_gets_a_sparse_gradient_that_sums_to_the_dense_one(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from deltalearn.train.batching import collate
    from deltalearn.scoring.logprobs import response_logps
    from deltalearn.train.speedups import sparse_tied_embedding

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    mb = collate(tokenize_dataset(tok, synthetic_pairs(4)), tok.pad_token_id)
    assert sparse_tied_embedding(AutoModelForCausalLM.from_pretrained(tiny_model_dir)) is False  # untied: stays dense
    grads = []
    for sparse in (False, True):
        config = AutoConfig.from_pretrained(tiny_model_dir)
        config.tie_word_embeddings = True
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
        if sparse:
            assert sparse_tied_embedding(model) is True
        for _ in range(2):  # two micro-batches accumulate
            sums, lens = response_logps(model, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=5)
            (sums / lens).sum().backward()
        grad = model.get_input_embeddings().weight.grad
        assert not grad.is_sparse  # AdamW sees a dense gradient
        grads.append(grad.clone())
    assert model.get_input_embeddings().sparse
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("keep_bytes", [0, 2**24])
def test_the_head_gradient_added_in_place_equals_autograds_without_a_vocab_sized_temporary(tiny_model_dir, tied, keep_bytes):
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from deltalearn.train.batching import collate
    from deltalearn.scoring.logprobs import response_logps
    from deltalearn.train.speedups import sparse_tied_embedding

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    mb = collate(tokenize_dataset(tok, synthetic_pairs(4)), tok.pad_token_id)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings = tied
    vocab_sized = []

    class VocabSizedAdds(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.add.Tensor and any(getattr(a, "shape", None) == (config.vocab_size, config.hidden_size) for a in args):
                vocab_sized.append(func)
            return func(*args, **(kwargs or {}))

    grads = []
    for in_place in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        assert sparse_tied_embedding(model) is tied
        for micro in range(2):  # the first micro-batch finds .grad empty, the second adds to it
            sums, lens = response_logps(model, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=5,
                                        keep_bytes=keep_bytes, head_grad_in_place=in_place)
            with VocabSizedAdds():
                (sums / lens * (micro + 1)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        assert not model.get_output_embeddings().weight.grad.is_sparse
        if in_place:
            assert vocab_sized == []  # nothing allocates a second or third [vocab, hidden] gradient
        else:
            vocab_sized.clear()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5, msg=n)


@pytest.mark.parametrize("keep_bytes", [0, 2**24])
def test_padding_free_rows_give_the_padded_log_probs_and_gradients(tiny_model_dir, keep_bytes):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deltalearn.scoring import packing
    from deltalearn.train.batching import collate
    from deltalearn.scoring.logprobs import response_logps

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    mb = collate(tokenize_dataset(tok, synthetic_pairs(4)), tok.pad_token_id)
    assert (mb.attention_mask == 0).any()  # rows of different lengths: the padded run computes on padding
    seen = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    results = []
    for padding_free in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        if padding_free:
            assert packing.use_packed_attention(model)
            torch.nn.functional.scaled_dot_product_attention = lambda q, *a, **k: seen.append((q.shape[2], k.get("is_causal"), k.get("attn_mask"))) or real_sdpa(q, *a, **k)
        try:
            sums, lens = response_logps(model, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=5,
                                        keep_bytes=keep_bytes, padding_free=padding_free)
            (sums * torch.arange(1, 9)).sum().backward()
        finally:
            torch.nn.functional.scaled_dot_product_attention = real_sdpa
        results.append((sums.detach(), lens, {n: p.grad.clone() for n, p in model.named_parameters()}))
    # Attention ran once per row and layer, causally, without a mask, on each row's real length.
    assert sorted(seen) == sorted([(int(n), True, None) for n in mb.attention_mask.sum(1)] * model.config.num_hidden_layers)
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-6)
    assert torch.equal(results[0][1], results[1][1])
    for n in results[0][2]:
        torch.testing.assert_close(results[0][2][n], results[1][2][n], atol=1e-5, rtol=1e-4, msg=n)
    # Calls without row boundaries (reference pass, evaluation) stay plain sdpa with the padding mask.
    padded, _ = response_logps(model, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=5)
    torch.testing.assert_close(padded.detach(), results[0][0], atol=1e-5, rtol=1e-6)
    # Packed rows on a model left on sdpa: transformers masks the packed block instead; same values.
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    masked, _ = response_logps(plain, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=5, padding_free=True)
    torch.testing.assert_close(masked.detach(), results[0][0], atol=1e-5, rtol=1e-6)


def test_padding_free_training_follows_the_padded_trajectory_and_saves_a_plain_model(tmp_path, tiny_model_dir, pairs_file):
    from transformers import AutoModelForCausalLM

    padded = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "padded")))
    packed = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "packed"), padding_free=True))
    assert padded["padding_free"] is False and packed["padding_free"] is True
    a = read_jsonl(tmp_path / "padded" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "packed" / "metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    assert a[-1]["grad_norm"] == pytest.approx(b[-1]["grad_norm"], rel=1e-3)
    assert "deltalearn_packed" not in (tmp_path / "packed" / "final" / "config.json").read_text()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "packed" / "final").config._attn_implementation == "sdpa"


def test_the_reference_pass_packed_equals_the_padded_one(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deltalearn.scoring.packing import use_packed_attention
    from deltalearn.train.refcache import compute_reference

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = tokenize_dataset(tok, synthetic_pairs(10))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    padded = compute_reference(model, pairs, tok.pad_token_id, micro=4, chunk=7)
    assert use_packed_attention(model)
    packed = compute_reference(model, pairs, tok.pad_token_id, micro=4, chunk=7, padding_free=True)
    for a, b in zip(padded, packed):
        assert (a != 0).all()
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-6)


def test_pack_rows_maps_every_real_position_and_restarts_positions():
    from deltalearn.scoring.packing import pack_rows

    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]])
    att = (ids != 0).long()
    att[2] = 1
    p = pack_rows(ids, att)
    assert p["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1, 2, 3, 4]]
    assert p["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert p["cu_seq_lens_q"].tolist() == [0, 3, 5, 9] and p["max_length_q"] == 4
    assert p["index"].tolist() == [[0, 1, 2, -1], [3, 4, -1, -1], [5, 6, 7, 8]]


def test_packed_attention_is_not_used_for_windowed_or_capped_models(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from deltalearn.scoring.packing import PACKED, use_packed_attention

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.sliding_window = 16
    assert use_packed_attention(model) is False and model.config._attn_implementation == "sdpa"
    model.config.sliding_window = None
    assert use_packed_attention(model) is True and model.config._attn_implementation == PACKED


def test_compiled_layers_give_the_same_trajectory_and_compile_before_step_one(tmp_path, tiny_model_dir, pairs_file):
    from deltalearn.train.speedups import have_cpp_compiler

    if not have_cpp_compiler():
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    eager = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=2, out_dir=str(tmp_path / "eager")))
    fast = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=2, out_dir=str(tmp_path / "compiled"), torch_compile=True))
    assert eager["compiled_layers"] == 0 and eager["compile_seconds"] is None
    assert fast["compiled_layers"] == 4 and fast["compile_seconds"] > 0
    a = read_jsonl(tmp_path / "eager" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "compiled" / "metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    assert a[-1]["grad_norm"] == pytest.approx(b[-1]["grad_norm"], rel=1e-3)
    from safetensors.torch import load_file  # the saved weights keep their names (no compile wrapper prefix)

    assert load_file(tmp_path / "compiled" / "final" / "model.safetensors").keys() == \
        load_file(tmp_path / "eager" / "final" / "model.safetensors").keys()
    # a run directory trained eager can be resumed or reused compiled
    assert done_with(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=2, torch_compile=True, out_dir=str(tmp_path / "eager")))


@pytest.mark.parametrize("into_grad", [False, True])
def test_the_lean_mlp_gives_the_mlps_outputs_and_gradients_and_keeps_three_tensors(tiny_model_dir, into_grad):
    from transformers import AutoModelForCausalLM

    from deltalearn.train.lean_mlp import use_lean_mlp

    results, kept = [], []
    for lean in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        mlp = model.model.layers[0].mlp
        if lean:
            assert use_lean_mlp(model, into_grad=into_grad) == model.config.num_hidden_layers
        torch.manual_seed(1)
        x = torch.randn(1, 7, model.config.hidden_size, requires_grad=True)
        outs, x_grads = [], []
        for micro in range(2):  # the first backward finds .grad empty, the second adds to it
            saved = []
            with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
                y = mlp(x * (micro + 1))
            weights = {p.untyped_storage().data_ptr() for p in mlp.parameters()}
            kept.append({t.untyped_storage().data_ptr() for t in saved} - weights)
            y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(micro)))
            outs.append(y.detach())
            x_grads.append(x.grad.clone())
        results.append((outs, x_grads, {n: p.grad.clone() for n, p in mlp.named_parameters()}))
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert results[0][2].keys() == results[1][2].keys() == {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}
    for n in results[0][2]:
        torch.testing.assert_close(results[0][2][n], results[1][2][n], atol=1e-6, rtol=1e-5, msg=n)
    # Activations kept for backward, per call: x, gate(x), up(x) and silu(gate), the product, against x, gate(x), up(x).
    assert [len(k) for k in kept] == [5, 5, 3, 3]


def test_the_lean_mlp_leaves_lora_and_other_mlps_alone(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from deltalearn.train.lean_mlp import use_lean_mlp

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.model.layers[0].mlp.act_fn = torch.nn.GELU()
    assert use_lean_mlp(model) == model.config.num_hidden_layers - 1
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=2, target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert use_lean_mlp(lora.get_base_model()) == 0


def test_lean_mlp_training_follows_the_plain_trajectory(tmp_path, tiny_model_dir, pairs_file):
    plain = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "plain")))
    lean = train(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "lean"), lean_mlp=True))
    assert plain["lean_mlps"] == 0 and lean["lean_mlps"] == 4
    a = read_jsonl(tmp_path / "plain" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "lean" / "metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    assert [r["grad_norm"] for r in a] == pytest.approx([r["grad_norm"] for r in b], rel=1e-4)
    assert done_with(cfg(tmp_path, tiny_model_dir, pairs_file, max_steps=3, out_dir=str(tmp_path / "lean")))


def test_the_paper_presets_bfloat16_path_trains(tmp_path, tiny_model_dir, pairs_file):
    """What GPUs run: the `paper` preset (bf16 autocast on float32 master weights, gradient checkpointing)."""
    s = train(TrainConfig.model_validate({"preset": "paper", "model": {"name": "tiny", "model": str(tiny_model_dir)},
                                          "data": str(pairs_file), "out_dir": str(tmp_path / "bf16"), "lr": 1e-3,
                                          "global_batch_size": 4, "max_length": 64, "max_steps": 3, "tracker": "none"}))
    hist = read_jsonl(tmp_path / "bf16" / "metrics.jsonl")
    assert s["steps"] == 3 and all(math.isfinite(h["loss"]) and math.isfinite(h["grad_norm"]) for h in hist)
    assert hist[-1]["rewards/margin"] > 0  # it learns the preference in bf16 too


def test_the_gpu_check_refuses_without_a_gpu(tmp_path):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "gpu_check: no CUDA device here (torch.cuda.is_available() is False); this check needs a GPU")
