"""The training loop: one loop for every method, on HF accelerate (1 CPU process to many GPUs).

    pairs -> tokenise (as TRL) -> reference log-probs (cached, forward only) -> steps of
    length-grouped micro-batches -> checkpoints, metrics.jsonl, tensorboard -> final weights
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import yaml

from .. import __version__
from ..errors import DeltaError
from ..io import append_jsonl, atomic_dir, fingerprint, read_jsonl, write_json_atomic, write_jsonl_atomic, write_text_atomic
from ..models.loading import cache_dir, dir_fingerprint, load_model
from ..pairs.dataset import load_pairs
from . import losses as L
from .batching import apply_length_policy, collate, global_batches, micro_batches, tokenize_dataset
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .flops import PeakProbe, model_shape, train_flops
from .lean_mlp import use_lean_mlp
from .logprobs import ResponseLogps
from .malloc import keep_freed_memory
from .packing import use_packed_attention
from .refcache import compute_reference, load_reference, save_reference
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
    m = cfg.method
    if m == "dpo_norm":
        loss, rc, rr = L.dpo_norm_loss(pol_c, pol_r, ref_c, ref_r, c_len, r_len, cfg.beta)
    elif m == "dpo":
        loss, rc, rr = L.dpo_loss(pol_c, pol_r, ref_c, ref_r, cfg.beta, cfg.label_smoothing)
    elif m == "ipo":
        loss, rc, rr = L.ipo_loss(pol_c, pol_r, ref_c, ref_r, c_len, r_len, cfg.beta)
    else:
        loss, rc, rr = L.simpo_loss(pol_c, pol_r, c_len, r_len, cfg.beta, cfg.gamma)
    if cfg.nll_coef:
        loss = loss + cfg.nll_coef * L.nll_per_token(pol_c, c_len)
    return loss, rc, rr


def _data_fingerprint(path: Path, split: str | None) -> str:
    if path.is_dir():
        return fingerprint([dir_fingerprint(path), sorted(p.name for p in path.iterdir()), split])
    from ..io import file_fingerprint

    return fingerprint([file_fingerprint(path), split])


def train(cfg: TrainConfig, *, console=None) -> dict:
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed

    # Without a GPU, ask for CPU explicitly: accelerate then runs several launched processes as
    # MULTI_CPU over gloo instead of treating each one as a lone process.
    on_cpu = not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu)
    world, rank = state.num_processes, state.process_index
    if cfg.global_batch_size % (world * cfg.micro_batch_size):
        raise DeltaError(
            f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size "
            f"{cfg.micro_batch_size} x {world} processes"
        )
    accum = cfg.global_batch_size // (world * cfg.micro_batch_size)
    # Master weights stay float32 (an update of lr 5e-8 vanishes in bfloat16 weights); `dtype: bfloat16`
    # means bf16 compute through accelerate's mixed precision (DeepSpeed/FSDP apply it their way).
    accelerator = Accelerator(gradient_accumulation_steps=accum, cpu=on_cpu,
                              mixed_precision="bf16" if cfg.dtype == "bfloat16" else "no")
    main = accelerator.is_main_process
    if accelerator.device.type == "cpu":
        keep_freed_memory()
    set_seed(cfg.seed)
    out = Path(cfg.out_dir)
    t_start = time.perf_counter()

    # Data
    data_path = Path(cfg.data)
    rows = load_pairs(data_path)
    if cfg.data_split is not None:
        rows = [r for r in rows if r.get("split") == cfg.data_split]
        if not rows:
            raise DeltaError(f'{data_path}: no pairs with split "{cfg.data_split}"')

    # Model (the main process converts a GGUF once; the others then read the cache)
    with accelerator.main_process_first():
        loaded = load_model(cfg.model, dtype="float32", device=str(accelerator.device))
    model, tok = loaded.model, loaded.tokenizer
    pairs = tokenize_dataset(tok, rows, data_path)
    pairs, length_counts = apply_length_policy(pairs, cfg.max_length, cfg.truncation)
    if not pairs:
        raise DeltaError(f"{data_path}: every pair is longer than max_length {cfg.max_length}")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    padding_free = cfg.padding_free and use_packed_attention(model)
    if cfg.padding_free and not padding_free:
        from rich.console import Console

        (console or Console(stderr=True)).print("[yellow]padding_free: packing needs plain causal sdpa attention (no sliding "
                                                "window, soft-capping or mixed layer types); training this model padded")

    # Reference log-probs: computed once from the starting weights, before any adapter exists.
    ref_c = ref_r = None
    ref_info = None
    if L.NEEDS_REFERENCE[cfg.method]:
        key = fingerprint([loaded.fingerprint, _data_fingerprint(data_path, cfg.data_split), cfg.max_length,
                           cfg.truncation, tok.chat_template, cfg.dtype])
        ref_path = cache_dir() / "refcache" / f"{key}.safetensors"
        cached = load_reference(ref_path)
        t0 = time.perf_counter()
        if cached is None:
            with accelerator.autocast():
                ref_c, ref_r = compute_reference(model, pairs, pad_id, micro=max(cfg.micro_batch_size, 4),
                                                 chunk=cfg.logprob_chunk, rank=rank, world=world, device=accelerator.device,
                                                 padding_free=padding_free)
            if world > 1:
                ref_c = accelerator.reduce(ref_c.to(accelerator.device), "sum").cpu()
                ref_r = accelerator.reduce(ref_r.to(accelerator.device), "sum").cpu()
            if main:
                save_reference(ref_path, ref_c, ref_r)
            accelerator.wait_for_everyone()
        else:
            ref_c, ref_r = cached
        ref_info = {"path": str(ref_path), "cached": cached is not None, "seconds": round(time.perf_counter() - t0, 2)}

    # Adapter, checkpointing, optimizer
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM"))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    lm = model.get_base_model() if cfg.lora is not None else model
    shape = model_shape(lm)
    # One plain process only: DDP, FSDP and DeepSpeed hook each parameter's gradient as autograd
    # delivers it, so they need dense gradients that go through autograd.
    plain_process = accelerator.distributed_type == DistributedType.NO
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    if plain_process:
        sparse_tied_embedding(lm)
    compiled = 0
    if cfg.torch_compile:
        if accelerator.device.type == "cpu" and not have_cpp_compiler():
            from rich.console import Console

            (console or Console(stderr=True)).print("[yellow]torch_compile: no C++ compiler found (g++, clang++, $CXX); training eager")
        else:
            compiled = compile_decoder_layers(lm)
    lean = 0
    if cfg.lean_mlp and not compiled and not sharded and cfg.dtype == "float32":
        lean = use_lean_mlp(lm, into_grad=plain_process)
    wrapper = ResponseLogps(model, cfg.logprob_chunk, cfg.head_keep_mb * 2**20, head_grad_in_place=plain_process,
                            padding_free=padding_free)
    params = [p for p in wrapper.parameters() if p.requires_grad]
    # The fused kernel updates each tensor in one pass: faster, and no per-tensor temporaries.
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay, fused=accelerator.device.type in ("cpu", "cuda"))
    if not sharded:
        allocate_optimizer_state(optimizer)  # DeepSpeed/FSDP build their own, sharded, in prepare()
    steps_per_epoch = len(pairs) // cfg.global_batch_size
    if steps_per_epoch == 0:
        raise DeltaError(f"{data_path}: {len(pairs)} usable pairs is fewer than global_batch_size {cfg.global_batch_size}")
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    warmup = math.ceil(cfg.warmup_ratio * total)
    # The scheduler is stepped by us once per optimizer step (accelerate's wrapper would step it once per process).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_floor(total, warmup, cfg.min_lr_ratio))
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)

    # Resume
    ckpt_root = out / "checkpoints"
    start_step = 0
    last = latest_checkpoint(ckpt_root)
    if last is not None:
        same_config(out, cfg)
    if last is not None:
        if sharded:
            accelerator.load_state(str(last / "accelerate"))
            scheduler.load_state_dict(torch.load(last / "scheduler.pt", weights_only=True))
            start_step = int(json.loads((last / "state.json").read_text())["step"])
        else:
            start_step = load_checkpoint(last, accelerator.unwrap_model(wrapper), optimizer, scheduler)["step"]
    metrics_path = out / "metrics.jsonl"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        # Steps logged after the checkpoint we resume from are replayed, so drop them.
        old = read_jsonl(metrics_path, tolerate_torn_tail=True) if metrics_path.exists() else []
        write_jsonl_atomic(metrics_path, [m for m in old if m["step"] <= start_step])

    compile_seconds = None
    if compiled and not sharded and start_step < total:
        # Compile now, on the first micro-batch, so that step times (and MFU) are the steady state;
        # its gradients are thrown away. DeepSpeed/FSDP count backward passes: they compile in step 1.
        t0 = time.perf_counter()
        first = global_batches(len(pairs), cfg.global_batch_size, cfg.seed, 0)[0]
        mb = collate(micro_batches(pairs, first, rank, world, cfg.micro_batch_size)[0], pad_id, rejected=cfg.method != "sft")
        with accelerator.no_sync(wrapper):
            _forward(wrapper, mb, accelerator.device)[0].sum().backward()
        optimizer.zero_grad(set_to_none=True)
        compile_seconds = round(time.perf_counter() - t0, 2)
    # MFU is measured against the peak probed just before and just after each step (their mean: the
    # machine's speed during the step), not one measured at another moment: this machine's peak drifts
    # 20-30% in minutes. The summary adds the stricter figure against the run's best probe.
    probe = PeakProbe(accelerator.device, torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32) if main else None
    peak_before = probe() if probe else 0.0
    best_peak = peak_before
    tracker = _tracker(cfg, out) if main else None
    progress = _progress(console) if main else None
    task = progress.add_task("train", total=total, completed=start_step, info="") if progress else None
    history = []
    step = start_step
    try:
        while step < total:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            positions = global_batches(len(pairs), cfg.global_batch_size, cfg.seed, epoch)[in_epoch]
            mbs = micro_batches(pairs, positions, rank, world, cfg.micro_batch_size)
            global_chosen_tokens = sum(len(pairs[p].chosen) for p in positions)
            t0 = time.perf_counter()
            sums = torch.zeros(7, dtype=torch.float64)  # loss, reward c, reward r, reward acc, logp acc, pairs, tokens
            flops = 0.0
            sft = cfg.method == "sft"
            for mb_pairs in mbs:
                mb = collate(mb_pairs, pad_id, rejected=not sft)  # SFT never looks at the rejected answers
                k = len(mb_pairs)
                with accelerator.accumulate(wrapper):
                    logp, lens = _forward(wrapper, mb, accelerator.device)
                    pol_c, c_len = logp[:k], lens[:k]
                    pol_r, r_len = (logp[k:], lens[k:]) if not sft else (pol_c, c_len)
                    if sft:
                        # token-level mean over the global batch, as TRL's SFT
                        scaled = -pol_c.sum() * world * accum / global_chosen_tokens
                        loss_pairs = (-pol_c / c_len).detach()
                        rc = rr = torch.zeros(k)
                    else:
                        rc_ref = ref_c[mb.index].to(logp) if ref_c is not None else None
                        rr_ref = ref_r[mb.index].to(logp) if ref_r is not None else None
                        loss_vec, rc, rr = pair_losses(cfg, pol_c, pol_r, c_len, r_len, rc_ref, rr_ref)
                        scaled = loss_vec.sum() * world * accum / cfg.global_batch_size
                        loss_pairs = loss_vec.detach()
                    accelerator.backward(scaled)
                with torch.no_grad():
                    sums += torch.tensor([
                        loss_pairs.sum().item(), rc.sum().item(), rr.sum().item(), (rc > rr).float().sum().item(),
                        (pol_c / c_len > pol_r / r_len).float().sum().item(), k, mb.n_tokens], dtype=torch.float64)
                    row_lengths = mb.attention_mask.sum(1).tolist()
                    flops += train_flops(shape, row_lengths, int(mb.loss_mask.sum()))
            if world > 1:
                sums = accelerator.reduce(sums.to(accelerator.device), "sum").cpu()
                flops = float(accelerator.reduce(torch.tensor([flops], device=accelerator.device), "sum").item())
            if not math.isfinite(sums[0].item()):
                raise DeltaError(f"step {step + 1}: loss is {sums[0].item()}; stopped before the update. "
                                 f"The last good checkpoint is kept in {ckpt_root}")
            if cfg.max_grad_norm:
                grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seconds = time.perf_counter() - t0
            peak_after = probe() if probe else 0.0
            peak = (peak_before + peak_after) / 2
            best_peak, peak_before = max(best_peak, peak_after), peak_after
            n = sums[5].item()
            row = {
                "step": step, "epoch": epoch, "loss": sums[0].item() / n,
                "rewards/chosen": sums[1].item() / n, "rewards/rejected": sums[2].item() / n,
                "rewards/margin": (sums[1].item() - sums[2].item()) / n, "rewards/accuracy": sums[3].item() / n,
                "logps/accuracy": sums[4].item() / n, "grad_norm": float(grad_norm) if grad_norm is not None else None, "lr": lr,
                "tokens": int(sums[6].item()), "tokens_per_s": sums[6].item() / seconds, "seconds": seconds,
                "flops": flops, "matmul_peak": peak, "mfu": (flops / seconds / (peak * world)) if peak else None,
            }
            if sft:  # no pair, no reward
                row.update({k: None for k in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy",
                                              "logps/accuracy")})
            history.append(row)
            if main:
                if step % cfg.log_every == 0 or step == total:
                    append_jsonl(metrics_path, [row])
                    if tracker:
                        tracker(row)
                acc = f" acc {row['rewards/accuracy']:.2f}" if row["rewards/accuracy"] is not None else ""
                progress.update(task, advance=1, info=f"loss {row['loss']:.4f}{acc} {row['tokens_per_s']:.0f} tok/s")
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                _save(accelerator, sharded, ckpt_root, step, wrapper, optimizer, scheduler, cfg)
    finally:
        if progress:
            progress.stop()
        if tracker:
            tracker(None)

    # Final weights
    final_dir = out / "final"
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(wrapper).model
    if main:
        state_dict = accelerator.get_state_dict(wrapper) if sharded else None
        if state_dict is not None:
            state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
        unwrapped.config.use_cache = True  # off for training only; a saved model should decode with its KV cache
        with atomic_dir(final_dir) as tmp:  # a crash while saving never leaves a half model named final/
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tok.save_pretrained(tmp)
    summary = {
        "deltalearn": __version__, "method": cfg.method, "pairs": len(rows), "usable_pairs": len(pairs),
        "length_policy": {"max_length": cfg.max_length, "policy": cfg.truncation, **length_counts},
        "dropped_incomplete_batch_pairs": len(pairs) - steps_per_epoch * cfg.global_batch_size,
        "steps": step, "resumed_from": start_step, "processes": world, "reference": ref_info,
        "compiled_layers": compiled, "compile_seconds": compile_seconds, "padding_free": padding_free, "lean_mlps": lean,
        "matmul_peak_flops": best_peak if main else None, "final": str(final_dir), "seconds": round(time.perf_counter() - t_start, 2),
        "last": history[-1] if history else None,
        "mean_tokens_per_s": (sum(h["tokens"] for h in history) / sum(h["seconds"] for h in history)) if history else None,
        "mean_mfu": (sum(h["mfu"] for h in history) / len(history)) if history and history[0]["mfu"] else None,
        # Stricter: all the run's FLOPs over its seconds, against the best probe of the whole run.
        "mfu_vs_best_peak": (sum(h["flops"] for h in history) / sum(h["seconds"] for h in history) / (best_peak * world))
        if history and best_peak else None,
    }
    if not main:
        return None
    write_json_atomic(out / "summary.json", summary)
    return summary


# Settings that change how a run is logged, saved or run, not what it computes.
# torch_compile, lean_mlp and micro_batch_size only change how fast the same step runs: a step's
# gradient is the same sum over its global batch however it is cut (floating-point order aside).
_BOOKKEEPING = {"name", "out_dir", "tracker", "save_every", "keep_checkpoints", "log_every", "torch_compile", "lean_mlp",
                "micro_batch_size"}


def same_config(out: Path, cfg: TrainConfig) -> bool:
    """True when `out` holds a run of this config; raises when it holds a run of another one, so a
    changed recipe never resumes (or reuses) weights trained with different settings."""
    path = out / "config.yaml"
    if not path.is_file():
        return False
    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    new = cfg.model_dump(mode="json")
    # A key missing from an older run's config is a setting added since, which that run had at its default.
    fields = type(cfg).model_fields
    changed = sorted(k for k in new.keys() - _BOOKKEEPING if old.get(k, fields[k].default) != new[k])
    if changed:
        raise DeltaError(f"{out}: holds a run with different settings ({', '.join(changed)}); "
                         "use another out_dir or delete this one")
    return True


def _forward(wrapper, mb, device):
    """(summed response log-probs, response token counts) of a micro-batch's rows."""
    return wrapper(mb.input_ids.to(device), mb.attention_mask.to(device), mb.loss_mask.to(device))


def _save(accelerator, sharded, root, step, wrapper, optimizer, scheduler, cfg) -> None:
    accelerator.wait_for_everyone()
    if sharded:  # every process writes its shard through accelerate
        import os
        import shutil

        path = root / f"step-{step:07d}"
        if accelerator.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".step-{step:07d}.partial"
        accelerator.save_state(str(tmp / "accelerate"))
        if accelerator.is_main_process:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            write_json_atomic(tmp / "state.json", {"step": step})
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
            write_text_atomic(root / "latest", path.name + "\n")
    elif accelerator.is_main_process:
        save_checkpoint(root, step, accelerator.unwrap_model(wrapper), optimizer, scheduler, {"step": step},
                        cfg.keep_checkpoints)
    accelerator.wait_for_everyone()


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

    writer = SummaryWriter(str(out / "tensorboard"))

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
