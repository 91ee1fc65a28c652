"""The training loop: one loop for every method, on HF accelerate (1 CPU process to many GPUs).

    pairs -> tokenise (as TRL) -> reference log-probs (cached, forward only) -> steps of
    length-grouped micro-batches -> checkpoints, metrics.jsonl, tensorboard -> final weights

Seams: `claim` (is this run directory new, to resume, or done?), `setup` (data, model, reference,
optimizer, resume), `train_step` (one optimizer step), `finish` (final weights, summary).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .. import __version__, faults, record
from ..errors import DeltaError
from ..io import (append_jsonl, atomic_dir, cache_dir, file_fingerprint, fingerprint, has_weights, read_jsonl,
                  remove_stale_temps, write_json_atomic, write_jsonl_atomic, write_text_atomic)
from ..models.loading import dir_fingerprint, load_model, tier_fingerprint
from ..pairs.dataset import load_pairs
from ..rundir import CHECKPOINTS, FINAL, SUMMARY, TENSORBOARD, read_summary, summary_path
from . import losses as L
from .batching import apply_length_policy, collate, global_batches, micro_batches, tokenize_dataset
from .checkpoint import latest_checkpoint
from .config import BOOKKEEPING_KEYS, TrainConfig
from .flops import PeakProbe, model_shape, train_flops
from .lean_mlp import use_lean_mlp
from ..scoring.logprobs import ResponseLogps
from .malloc import keep_freed_memory
from ..scoring.packing import use_packed_attention
from .refcache import compute_reference, load_reference, load_sequences, save_reference, save_sequences, sequence_values
from .speedups import allocate_optimizer_state, compile_decoder_layers, have_cpp_compiler, sparse_tied_embedding


def cosine_with_floor(total: int, warmup: int, floor: float):
    """Linear warm-up to 1, then cosine from 1 down to `floor` (a fraction of the peak lr)."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def pair_losses(cfg: TrainConfig, pol_c, pol_r, c_len, r_len, ref_c, ref_r):
    """Per-pair loss and rewards for the preference methods (sft is handled per token)."""
    return L.pair_losses(cfg.method, pol_c, pol_r, c_len, r_len, ref_c, ref_r, beta=cfg.beta,
                         label_smoothing=cfg.label_smoothing, gamma=cfg.gamma, nll_coef=cfg.nll_coef)


def _data_fingerprint(path: Path, split: str | None = None) -> str:
    if path.is_dir():
        return fingerprint([dir_fingerprint(path), sorted(p.name for p in path.iterdir()), split])
    return fingerprint([file_fingerprint(path), split])



def run_inputs(cfg: TrainConfig) -> dict:
    """What the run's result depends on: every setting but the bookkeeping ones, the pairs file's
    content hash and the starting weights' fingerprint. Checked before anything is loaded."""
    data = Path(cfg.data)
    if not data.exists():
        raise DeltaError(f"{data}: pairs file not found")
    inputs = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in BOOKKEEPING_KEYS}
    return {**inputs, "data_sha256": _data_fingerprint(data), "model_fingerprint": tier_fingerprint(cfg.model)}


def _defaults() -> dict:
    """A setting missing from an older record is one added since, which that run had at its default."""
    return {k: f.default for k, f in TrainConfig.model_fields.items() if k not in BOOKKEEPING_KEYS and not f.is_required()}


def done_with(cfg: TrainConfig) -> bool:
    """Recorded as finished with exactly these inputs (its weights may since have been removed)."""
    rec = record.read(cfg.out_dir).get("train")
    return rec is not None and rec["state"] == "done" and not record.differences(rec["inputs"], run_inputs(cfg), _defaults())


def _legacy(out: Path) -> bool:
    """A run directory made before run records: its inputs are unknown."""
    return not (out / record.RECORD).is_file() and any((out / n).exists() for n in ("config.yaml", SUMMARY, CHECKPOINTS))


def _clear(out: Path) -> None:
    import shutil

    for name in (CHECKPOINTS, FINAL, TENSORBOARD):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (SUMMARY, "metrics.jsonl", "config.yaml"):
        (out / name).unlink(missing_ok=True)


def claim(cfg: TrainConfig, main: bool, engine=None) -> str:
    """Decide, once, what this out_dir holds for this config; every process agrees on the answer.
    Refusals happen in every process (they read the same record); a rerun's clearing in the main one."""
    out = Path(cfg.out_dir)
    inputs = run_inputs(cfg)
    if main or cfg.on_change == "refuse":
        state = record.check(out, "train", inputs, cfg.on_change if main else "refuse", clear=lambda: _clear(out),
                             legacy=_legacy(out), what="a training run", defaults=_defaults(),
                             resumable=lambda: latest_checkpoint(out / CHECKPOINTS) is not None)
        if main and state == "done" and not has_weights(out / FINAL):
            _clear(out)  # recorded as done, but its weights were deleted: train again
            state = "new"
        if main and state != "done":
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(out)
            remove_stale_temps(out / CHECKPOINTS)
            record.mark(out, "train", inputs, "started")
    if engine is not None:
        engine.barrier()
    return record.read(out)["train"]["state"]


def train(cfg: TrainConfig, *, console=None) -> dict | None:
    """Train, resume, or reuse a finished run of exactly these inputs; returns the summary (main process)."""
    from accelerate.utils import set_seed

    from .engines import make_engine

    world = _world_size()
    if cfg.global_batch_size % (world * cfg.micro_batch_size):
        raise DeltaError(
            f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size "
            f"{cfg.micro_batch_size} x {world} processes"
        )
    engine = make_engine(cfg, cfg.global_batch_size // (world * cfg.micro_batch_size))
    if claim(cfg, engine.main, engine) == "done":
        return read_summary(cfg.out_dir) if engine.main else None
    if engine.device.type == "cpu":
        keep_freed_memory()
    set_seed(cfg.seed)
    t_start = time.perf_counter()
    run = setup(cfg, engine, console)
    run.t_start = t_start
    try:
        while run.step < run.total:
            row = train_step(run)
            if run.main:
                if run.step % cfg.log_every == 0 or run.step == run.total:
                    append_jsonl(run.out / "metrics.jsonl", [row])
                    if run.tracker:
                        run.tracker(row)
                faults.point("train.step")
                acc = f" acc {row['rewards/accuracy']:.2f}" if row["rewards/accuracy"] is not None else ""
                run.progress.update(run.task, advance=1, info=f"loss {row['loss']:.4f}{acc} {row['tokens_per_s']:.0f} tok/s")
            if cfg.save_every and run.step % cfg.save_every == 0 and run.step < run.total:
                _save(run)
    finally:
        if run.progress:
            run.progress.stop()
        if run.tracker:
            run.tracker(None)
    return finish(run)


def _world_size() -> int:
    """Processes of this run, as the launcher (torchrun, accelerate launch) set them, before any engine exists."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Run:
    """Everything `setup` builds that a step and the finish read."""

    cfg: TrainConfig
    engine: Any
    out: Path
    rows: list
    pairs: list
    length_counts: dict
    tokenizer: Any
    pad_id: int
    prepared: "Prepared"
    optimizer: Any
    scheduler: Any
    ref_c: Any
    ref_r: Any
    ref_info: dict | None
    steps_per_epoch: int
    total: int
    padding_free: bool = False
    t_start: float = 0.0
    step: int = 0
    start_step: int = 0
    compile_seconds: float | None = None
    probe: Any = None
    peak_before: float = 0.0
    best_peak: float = 0.0
    history: list = field(default_factory=list)
    tracker: Any = None
    progress: Any = None
    task: Any = None

    @property
    def main(self) -> bool:
        return self.engine.main

    @property
    def world(self) -> int:
        return self.engine.world

    @property
    def rank(self) -> int:
        return self.engine.rank


def setup(cfg: TrainConfig, engine, console=None) -> Run:
    """Data, model, reference log-probs, optimizer and scheduler, then the checkpoint to resume from."""
    main = engine.main
    out = Path(cfg.out_dir)
    data_path = Path(cfg.data)
    rows = load_pairs(data_path)
    if cfg.data_split is not None:
        rows = [r for r in rows if r.get("split") == cfg.data_split]
        if not rows:
            raise DeltaError(f'{data_path}: no pairs with split "{cfg.data_split}"')

    if engine.device.type == "cpu":
        # A saturated preference loss (margins of tens of nats) drives gradients and AdamW's second
        # moments below float32's normal range, and x86 matmuls on denormal inputs run ~100x slower
        # (benchmarks/bench_denormal.py); flushing them to zero changes nothing above 1e-38.
        torch.set_flush_denormal(True)
    # The main process converts a GGUF once; the others then read the cache.
    with engine.main_first():
        loaded = load_model(cfg.model, dtype="float32", device=str(engine.device))
    model, tok = loaded.model, loaded.tokenizer
    pairs = tokenize_dataset(tok, rows, data_path)
    pairs, length_counts = apply_length_policy(pairs, cfg.max_length, cfg.truncation)
    if not pairs:
        raise DeltaError(f"{data_path}: every pair is longer than max_length {cfg.max_length}")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    padding_free = cfg.padding_free and use_packed_attention(model)
    if cfg.padding_free and not padding_free:
        _warn(console, "padding_free: packing needs plain causal sdpa attention (no sliding window, soft-capping or "
                       "mixed layer types); training this model padded")
    # Reference log-probs: computed once from the starting weights, before any adapter exists.
    ref_c, ref_r, ref_info = _reference(cfg, engine, model, tok, loaded.fingerprint, pairs, pad_id, padding_free)

    prepared = prepare_model(cfg, model, plain_process=engine.plain_process, sharded=engine.sharded, console=console,
                             padding_free=padding_free)
    if hasattr(engine, "shard"):  # FSDP2 shards before the optimizer sees the parameters
        engine.shard(prepared.wrapper, model.get_base_model() if cfg.lora is not None else model)
        prepared.params = [p for p in prepared.wrapper.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(prepared.params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay, fused=engine.device.type in ("cpu", "cuda"))
    if not prepared.sharded:
        allocate_optimizer_state(optimizer)  # DeepSpeed/FSDP build their own, sharded, in prepare()
    steps_per_epoch = len(pairs) // cfg.global_batch_size
    if steps_per_epoch == 0:
        raise DeltaError(f"{data_path}: {len(pairs)} usable pairs is fewer than global_batch_size {cfg.global_batch_size}")
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    # The scheduler is stepped by us once per optimizer step (accelerate's wrapper would step it once per process).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_floor(total, math.ceil(cfg.warmup_ratio * total),
                                                                               cfg.min_lr_ratio))
    prepared.wrapper = engine.prepare(prepared.wrapper, optimizer, scheduler)
    optimizer, scheduler = engine.optimizer, engine.scheduler
    run = Run(cfg=cfg, engine=engine, out=out, rows=rows, pairs=pairs, length_counts=length_counts, tokenizer=tok,
              pad_id=pad_id, prepared=prepared, optimizer=optimizer, scheduler=scheduler, ref_c=ref_c, ref_r=ref_r,
              ref_info=ref_info, steps_per_epoch=steps_per_epoch, total=total, padding_free=padding_free)

    last = latest_checkpoint(out / CHECKPOINTS)
    if last is not None:
        run.start_step = engine.load(last)
    run.step = run.start_step
    if main:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        # Steps logged after the checkpoint we resume from are replayed, so drop them.
        metrics = out / "metrics.jsonl"
        old = read_jsonl(metrics, tolerate_torn_tail=True) if metrics.exists() else []
        write_jsonl_atomic(metrics, [m for m in old if m["step"] <= run.start_step])
    if prepared.compiled and not prepared.sharded and run.start_step < total:
        run.compile_seconds = _compile_now(run)
    # MFU is measured against the peak probed just before and just after each step (their mean: the
    # machine's speed during the step), not one measured at another moment: a shared machine's peak drifts
    # 20-30% in minutes. The summary adds the stricter figure against the run's best probe.
    if main:
        run.probe = PeakProbe(engine.device, torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32)
        run.peak_before = run.best_peak = run.probe()
        run.tracker = _tracker(cfg, out)
        run.progress = _progress(console)
        run.task = run.progress.add_task("train", total=total, completed=run.start_step, info="")
    return run


def _reference(cfg, engine, model, tok, model_fp: str, pairs, pad_id, padding_free):
    if not L.NEEDS_REFERENCE[cfg.method]:
        return None, None, None
    world, rank = engine.world, engine.rank
    key = fingerprint([model_fp, _data_fingerprint(Path(cfg.data), cfg.data_split), cfg.max_length, cfg.truncation,
                       tok.chat_template, cfg.dtype])
    ref_path = cache_dir() / "refcache" / f"{key}.safetensors"
    cached = load_reference(ref_path)
    t0 = time.perf_counter()
    info = {"path": str(ref_path), "cached": cached is not None}
    if cached is None:
        # Sequences this starting model already scored for another dataset (e.g. the same chosen answers).
        seq_path = cache_dir() / "refcache" / f"seq-{fingerprint([model_fp, cfg.dtype, padding_free])}.safetensors"
        known = load_sequences(seq_path)
        # The reference is the starting model in the training dtype (bf16 autocast for `dtype: bfloat16`).
        autocast = torch.autocast(engine.device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else engine.autocast()
        with autocast:
            ref_c, ref_r = compute_reference(model, pairs, pad_id, micro=max(cfg.micro_batch_size, 4), chunk=cfg.logprob_chunk,
                                             rank=rank, world=world, device=engine.device, padding_free=padding_free,
                                             known=known)
        if world > 1:  # each process did every world-th micro-batch: the sum is the whole table
            ref_c, ref_r = engine.reduce_sum(ref_c), engine.reduce_sum(ref_r)
        if engine.main:  # the store first: a dataset entry then always implies its sequences are stored
            values = sequence_values(pairs, ref_c, ref_r)
            save_sequences(seq_path, {k: v for k, v in values.items() if k not in known})
            save_reference(ref_path, ref_c, ref_r)
            info["reused_sequences"] = sum(k in known for k in values)
        engine.barrier()
    else:
        ref_c, ref_r = cached
    return ref_c, ref_r, info | {"seconds": round(time.perf_counter() - t0, 2)}


@dataclass
class Prepared:
    """The model as the loop trains it: wrapped for response log-probs, with the speed-ups applied."""

    wrapper: Any
    params: list
    shape: dict
    plain_process: bool
    sharded: bool
    compiled: int
    lean: int


def prepare_model(cfg: TrainConfig, model, *, plain_process: bool = True, sharded: bool = False, console=None,
                  padding_free: bool) -> Prepared:
    """Adapter, gradient checkpointing and the speed-ups that fit this distributed set-up; shared with
    benchmarks/bench_micro_batch.py so that it measures what the loop trains.
    `plain_process`: one process, no gradient hooks; `sharded`: DeepSpeed or FSDP2."""
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM"))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    lm = model.get_base_model() if cfg.lora is not None else model
    # One plain process only: DDP, FSDP and DeepSpeed hook each parameter's gradient as autograd
    # delivers it, so they need dense gradients that go through autograd.
    if plain_process:
        sparse_tied_embedding(lm)
    compiled = 0
    if cfg.torch_compile:
        if next(lm.parameters()).device.type == "cpu" and not have_cpp_compiler():
            _warn(console, "torch_compile: no C++ compiler found (g++, clang++, $CXX); training eager")
        else:
            compiled = compile_decoder_layers(lm)
    lean = 0
    if cfg.lean_mlp and not compiled and not sharded and cfg.dtype == "float32":
        lean = use_lean_mlp(lm, into_grad=plain_process)
    wrapper = ResponseLogps(model, cfg.logprob_chunk, cfg.head_keep_mb * 2**20, head_grad_in_place=plain_process,
                            padding_free=padding_free)
    return Prepared(wrapper=wrapper, params=[p for p in wrapper.parameters() if p.requires_grad], shape=model_shape(lm),
                    plain_process=plain_process, sharded=sharded, compiled=compiled, lean=lean)


def _compile_now(run: Run) -> float:
    """Compile on the first micro-batch, so that step times (and MFU) are the steady state; its
    gradients are thrown away. DeepSpeed/FSDP count backward passes: they compile in step 1."""
    t0 = time.perf_counter()
    first = global_batches(len(run.pairs), run.cfg.global_batch_size, run.cfg.seed, 0)[0]
    mb = collate(micro_batches(run.pairs, first, run.rank, run.world, run.cfg.micro_batch_size)[0], run.pad_id,
                 rejected=run.cfg.method != "sft")
    with run.engine.no_sync():
        _forward(run.prepared.wrapper, mb, run.engine.device)[0].sum().backward()
    run.optimizer.zero_grad(set_to_none=True)
    return round(time.perf_counter() - t0, 2)


def train_step(run: Run) -> dict:
    """One optimizer step over one global batch; returns its metrics row."""
    cfg, engine, wrapper = run.cfg, run.engine, run.prepared.wrapper
    world, accum = run.world, cfg.global_batch_size // (run.world * cfg.micro_batch_size)
    epoch, in_epoch = divmod(run.step, run.steps_per_epoch)
    positions = global_batches(len(run.pairs), cfg.global_batch_size, cfg.seed, epoch)[in_epoch]
    mbs = micro_batches(run.pairs, positions, run.rank, world, cfg.micro_batch_size)
    global_chosen_tokens = sum(len(run.pairs[p].chosen) for p in positions)
    t0 = time.perf_counter()
    sums = torch.zeros(7, dtype=torch.float64)  # loss, reward c, reward r, reward acc, logp acc, pairs, tokens
    flops = 0.0
    sft = cfg.method == "sft"
    for i, mb_pairs in enumerate(mbs):
        mb = collate(mb_pairs, run.pad_id, rejected=not sft)  # SFT never looks at the rejected answers
        k = len(mb_pairs)
        with engine.micro(last=i == len(mbs) - 1):  # bf16 autocast, where asked, is the engine's own forward wrapper
            logp, lens = _forward(wrapper, mb, engine.device)
            pol_c, c_len = logp[:k], lens[:k]
            pol_r, r_len = (logp[k:], lens[k:]) if not sft else (pol_c, c_len)
            if sft:
                # token-level mean over the global batch, as TRL's SFT
                scaled = -pol_c.sum() * world * accum / global_chosen_tokens
                loss_pairs = (-pol_c / c_len).detach()
                rc = rr = torch.zeros(k)
            else:
                rc_ref = run.ref_c[mb.index].to(logp) if run.ref_c is not None else None
                rr_ref = run.ref_r[mb.index].to(logp) if run.ref_r is not None else None
                loss_vec, rc, rr = pair_losses(cfg, pol_c, pol_r, c_len, r_len, rc_ref, rr_ref)
                scaled = loss_vec.sum() * world * accum / cfg.global_batch_size
                loss_pairs = loss_vec.detach()
            engine.backward(scaled)
        with torch.no_grad():
            sums += torch.tensor([
                loss_pairs.sum().item(), rc.sum().item(), rr.sum().item(), (rc > rr).float().sum().item(),
                (pol_c / c_len > pol_r / r_len).float().sum().item(), k, mb.n_tokens], dtype=torch.float64)
            flops += train_flops(run.prepared.shape, mb.attention_mask.sum(1).tolist(), int(mb.loss_mask.sum()),
                                 frozen_base=run.cfg.lora is not None)
    if world > 1:
        sums = engine.reduce_sum(sums)
        flops = float(engine.reduce_sum(torch.tensor([flops], dtype=torch.float64)).item())
    if not math.isfinite(sums[0].item()):
        raise DeltaError(f"step {run.step + 1}: loss is {sums[0].item()}; stopped before the update. "
                         f"The last good checkpoint is kept in {run.out / 'checkpoints'}")
    lr = run.scheduler.get_last_lr()[0]
    grad_norm = engine.step(run.prepared.params)  # clip, update, schedule, zero the gradients
    run.step += 1
    seconds = time.perf_counter() - t0
    peak_after = run.probe() if run.probe else 0.0
    peak = (run.peak_before + peak_after) / 2
    run.best_peak, run.peak_before = max(run.best_peak, peak_after), peak_after
    n = sums[5].item()
    row = {
        "step": run.step, "epoch": epoch, "loss": sums[0].item() / n,
        "rewards/chosen": sums[1].item() / n, "rewards/rejected": sums[2].item() / n,
        "rewards/margin": (sums[1].item() - sums[2].item()) / n, "rewards/accuracy": sums[3].item() / n,
        "logps/accuracy": sums[4].item() / n, "grad_norm": float(grad_norm) if grad_norm is not None else None, "lr": lr,
        "tokens": int(sums[6].item()), "tokens_per_s": sums[6].item() / seconds, "seconds": seconds,
        "flops": flops, "matmul_peak": peak, "mfu": (flops / seconds / (peak * world)) if peak else None,
    }
    if sft:  # no pair, no reward
        row.update({k: None for k in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "logps/accuracy")})
    run.history.append(row)
    return row


def finish(run: Run) -> dict | None:
    """Save the final weights (atomically), write summary.json and mark the record done."""
    cfg, engine, out, history = run.cfg, run.engine, run.out, run.history
    final_dir = out / FINAL
    engine.barrier()
    # Every process joins in gathering sharded weights (ZeRO-3, FSDP2); only the main one writes them.
    state_dict = engine.full_state_dict()
    if state_dict is not None:
        state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
    if run.main:
        unwrapped = engine.unwrap().model
        unwrapped.config.use_cache = True  # off for training only; a saved model should decode with its KV cache
        with atomic_dir(final_dir) as tmp:  # a crash while saving never leaves a half model named final/
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            run.tokenizer.save_pretrained(tmp)
    engine.barrier()
    if not run.main:
        return None
    p = run.prepared
    summary = {
        "deltalearn": __version__, "method": cfg.method, "pairs": len(run.rows), "usable_pairs": len(run.pairs),
        "length_policy": {"max_length": cfg.max_length, "policy": cfg.truncation, **run.length_counts},
        "dropped_incomplete_batch_pairs": len(run.pairs) - run.steps_per_epoch * cfg.global_batch_size,
        "steps": run.step, "resumed_from": run.start_step, "processes": run.world, "reference": run.ref_info,
        "compiled_layers": p.compiled, "compile_seconds": run.compile_seconds, "padding_free": run.padding_free,
        "lean_mlps": p.lean, "matmul_peak_flops": run.best_peak, "final": str(final_dir),
        "seconds": round(time.perf_counter() - run.t_start, 2), "last": history[-1] if history else None,
        "mean_tokens_per_s": (sum(h["tokens"] for h in history) / sum(h["seconds"] for h in history)) if history else None,
        "mean_mfu": (sum(h["mfu"] for h in history) / len(history)) if history and history[0]["mfu"] else None,
        # Stricter: all the run's FLOPs over its seconds, against the best probe of the whole run.
        "mfu_vs_best_peak": (sum(h["flops"] for h in history) / sum(h["seconds"] for h in history) / (run.best_peak * run.world))
        if history and run.best_peak else None,
    }
    faults.point("train.before_summary")
    write_json_atomic(summary_path(out), summary)
    faults.point("train.before_done")
    record.mark(out, "train", run_inputs(cfg), "done")
    return summary


def _forward(wrapper, mb, device):
    """(summed response log-probs, response token counts) of a micro-batch's rows."""
    return wrapper(mb.input_ids.to(device), mb.attention_mask.to(device), mb.loss_mask.to(device))


def _save(run: Run) -> None:
    run.engine.save(run.out / CHECKPOINTS, run.step, run.cfg.keep_checkpoints)


def _warn(console, text: str) -> None:
    from rich.console import Console

    (console or Console(stderr=True)).print(f"[yellow]{text}")


def _tracker(cfg: TrainConfig, out: Path):
    if cfg.tracker == "none":
        return None
    if cfg.tracker == "wandb":
        import wandb  # only when the recipe asks for it

        run = wandb.init(project="deltalearn", name=cfg.name, config=cfg.model_dump(mode="json"))

        def log(row):
            if row is None:
                run.finish()
            else:
                run.log({k: v for k, v in row.items() if v is not None}, step=row["step"])

        return log
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / TENSORBOARD))

    def log(row):
        if row is None:
            writer.close()
            return
        for k, v in row.items():
            if k not in ("step", "epoch") and v is not None:
                writer.add_scalar(f"train/{k}", v, row["step"])

    return log


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                 TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    p.start()
    return p
