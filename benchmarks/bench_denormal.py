"""Why CPU training flushes denormals to zero (train/loop.py `setup`).

A preference loss that saturates (the margin grows to tens of nats, the loss to ~1e-12) leaves
gradients and AdamW's second moments below float32's smallest normal number (1.2e-38). x86 matmuls
whose inputs hold such denormals run far slower. This times one matmul with normal inputs, with
denormal inputs, and with denormal inputs after `torch.set_flush_denormal(True)`, in one process
(the machine's speed drifts, so only the ratios mean anything). Run nothing else meanwhile.

    .venv/bin/python benchmarks/bench_denormal.py --size 512 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import torch


def _time(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    n = args.size
    normal, other = torch.randn(n, n), torch.randn(n, n)
    denormal = torch.full((n, n), 1e-40)  # below float32's smallest normal, above zero
    torch.set_flush_denormal(False)
    rows = [("normal inputs", _time(normal, other, args.repeats)),
            ("denormal inputs", _time(denormal, other, args.repeats))]
    if not torch.set_flush_denormal(True):
        print("this CPU cannot flush denormals (no SSE3)")
    rows.append(("denormal inputs, flushed to zero", _time(denormal, other, args.repeats)))
    base = rows[0][1]
    print(f"{n}x{n} float32 matmul, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'inputs':<34}{'seconds':>10}{'x normal':>10}")
    for name, sec in rows:
        print(f"{name:<34}{sec:>10.4f}{sec / base:>10.1f}")


if __name__ == "__main__":
    main()
