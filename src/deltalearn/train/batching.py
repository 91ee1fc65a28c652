"""Pairs -> token ids (exactly as TRL tokenises them) -> length-grouped micro-batches.

A pair becomes two rows, prompt+chosen and prompt+rejected; the loss mask covers the response
tokens only (for a conversation: the assistant turn as the chat template renders it, its end
tokens included). Rows are right-padded only to the longest row of their micro-batch, and pairs are
sorted by length inside each global batch, so little compute goes to padding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DeltaError, where
from ..scoring.span import MicroBatch, TokenizedPair, collate, tokenize_pair  # noqa: F401  (the loop's imports)


def apply_length_policy(pairs: list[TokenizedPair], max_length: int, policy: str) -> tuple[list[TokenizedPair], dict]:
    """`truncate` cuts responses so prompt+response fits (pairs whose prompt leaves fewer than 8 response
    tokens are dropped); `drop` removes every pair that does not fit. Returns kept pairs and counts."""
    kept, counts = [], {"truncated": 0, "dropped": 0}
    for tp in pairs:
        if tp.length <= max_length:
            kept.append(tp)
            continue
        room = max_length - len(tp.prompt)
        if policy == "drop" or room < 8:
            counts["dropped"] += 1
            continue
        counts["truncated"] += 1
        kept.append(TokenizedPair(tp.index, tp.prompt, tp.chosen[:room], tp.rejected[:room]))
    return kept, counts


def tokenize_dataset(tokenizer, rows: list[dict], source: str | Path = "pairs") -> list[TokenizedPair]:
    out = []
    for i, row in enumerate(rows):
        tp = tokenize_pair(tokenizer, row, index=i, source=str(source))
        for name in ("chosen", "rejected"):
            if not getattr(tp, name):
                raise DeltaError(f"{where(source, i + 1, name)}: response has no tokens")
        out.append(tp)
    return out


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def global_batches(n: int, batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled global batches of dataset positions; an incomplete last batch is dropped (counted by the caller)."""
    order = epoch_order(n, seed, epoch)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


def micro_batches(pairs: list[TokenizedPair], positions: list[int], rank: int, world: int, micro: int) -> list[list[TokenizedPair]]:
    """This process's micro-batches of one global batch: sorted by length, dealt round-robin to the
    processes, then cut into micro-batches of `micro` pairs of similar length."""
    chosen = sorted((pairs[p] for p in positions), key=lambda tp: tp.length)
    mine = chosen[rank::world]
    return [mine[i : i + micro] for i in range(0, len(mine), micro)]
