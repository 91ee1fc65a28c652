"""Pairs per micro-batch and the lean MLP, A/B in one process on the embedded model.

The same groups of 8 pairs (the 64-pair benchmark's, packed as in the `cpu` preset) go through the
real model's forward and backward as micro-batches of each size, alternating which configuration
goes first; a matmul-peak probe brackets every group, so each group's MFU is against the machine's
speed at that moment (this VM's peak drifts 20-30% in minutes). Also reports the activations autograd
keeps for one micro-batch (storage bytes, once each). One process: run nothing else meanwhile.

    .venv/bin/python benchmarks/bench_micro_batch.py --configs 1 2 2-lean 4-lean --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=["1", "2", "2-lean"], help="pairs per micro-batch, '-lean' for lean_mlp")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()

    from bench_train import make_pairs
    from rich.console import Console
    from rich.table import Table

    from deltalearn.models import TierSpec, load_model
    from deltalearn.pairs.dataset import load_pairs
    from deltalearn.scoring.packing import use_packed_attention
    from deltalearn.train.batching import apply_length_policy, collate, global_batches, micro_batches, tokenize_dataset
    from deltalearn.train.config import TrainConfig
    from deltalearn.train.flops import PeakProbe, train_flops
    from deltalearn.train.lean_mlp import _is_gated_silu_mlp, use_lean_mlp
    from deltalearn.train.loop import prepare_model
    from deltalearn.train.malloc import keep_freed_memory

    keep_freed_memory()
    data = make_pairs(args.pairs, args.max_new_tokens)
    loaded = load_model(TierSpec(name="policy"))
    model, tok = loaded.model, loaded.tokenizer
    pairs, _ = apply_length_policy(tokenize_dataset(tok, load_pairs(data), data), 384, "truncate")
    # The loop's own model preparation, as the `cpu` preset trains (the lean MLP is switched per config below).
    cfg = TrainConfig.model_validate({"preset": "cpu", "data": str(data), "lean_mlp": False})
    prepared = prepare_model(cfg, model, plain_process=True, padding_free=use_packed_attention(model))
    wrapper, params = prepared.wrapper, prepared.params
    shape, probe = prepared.shape, PeakProbe("cpu", torch.float32)
    groups = global_batches(len(pairs), 8, 42, 0)

    def configure(name: str) -> int:
        for m in model.modules():
            if _is_gated_silu_mlp(m) and "forward" in m.__dict__:
                del m.forward
        if name.endswith("-lean"):
            use_lean_mlp(model, into_grad=True)
        return int(name.split("-")[0])

    def group(positions, size: int) -> float:
        flops = 0.0
        for mb_pairs in micro_batches(pairs, positions, 0, 1, size):
            mb = collate(mb_pairs, tok.pad_token_id, rejected=True)
            logp, _ = wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask)
            (logp.sum() * 1e-3).backward()  # backward costs the same whatever the loss
            flops += train_flops(shape, mb.attention_mask.sum(1).tolist(), int(mb.loss_mask.sum()))
        for p in params:
            p.grad = None
        return flops

    kept = {}
    for name in args.configs:
        size = configure(name)
        mb = collate(micro_batches(pairs, groups[0], 0, 1, size)[0], tok.pad_token_id, rejected=True)
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        weights = {p.untyped_storage().data_ptr() for p in params}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logp, _ = wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask)
        del logp
        kept[name] = (sum(b for k, b in storages.items() if k not in weights) / 2**20, int(mb.attention_mask.sum()))
    group(groups[0], configure(args.configs[0]))  # warm-up
    res = {name: [] for name in args.configs}
    for r in range(args.rounds):
        positions = groups[r % len(groups)]
        order = args.configs[r % len(args.configs):] + args.configs[:r % len(args.configs)]
        for name in order:
            size = configure(name)
            p1 = probe()
            t0 = time.perf_counter()
            flops = group(positions, size)
            dt = time.perf_counter() - t0
            p2 = probe()
            res[name].append((dt, flops / dt / ((p1 + p2) / 2)))
            print(f"round {r} {name}: {dt:.2f} s, MFU {res[name][-1][1]:.3f}", flush=True)

    base = sum(x[0] for x in res[args.configs[0]])
    table = Table(title=f"the same {args.rounds} groups of 8 pairs, forward+backward, alternating")
    for col in ("config", "seconds (sum)", f"speed vs {args.configs[0]}", "MFU median", "MFU range",
                "activations kept, 1st micro-batch (MB / tokens)"):
        table.add_column(col)
    for name, v in res.items():
        s = sum(x[0] for x in v)
        m = [x[1] for x in v]
        table.add_row(name, f"{s:.1f}", f"{base / s:.2f}x", f"{statistics.median(m):.3f}", f"{min(m):.2f}-{max(m):.2f}",
                      f"{kept[name][0]:.0f} / {kept[name][1]}")
    Console().print(table)


if __name__ == "__main__":
    main()
