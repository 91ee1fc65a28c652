"""Reference log-probs: one forward-only pass before training, cached on disk.

Keyed by (initial model fingerprint, dataset fingerprint, tokenisation settings), so a resumed run
reads the values computed from the starting checkpoint and never from the half-trained policy.
No reference model stays in memory while training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_path
from ..scoring.span import TokenizedPair, collate
from ..scoring.logprobs import response_logps


@torch.no_grad()
def compute_reference(model, pairs: list[TokenizedPair], pad_id: int, *, micro: int, chunk: int,
                      rank: int = 0, world: int = 1, device="cpu", progress=None,
                      padding_free: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected for every pair, indexed by dataset row.

    Each process does every `world`-th micro-batch; the caller sums the partial results."""
    n = max(tp.index for tp in pairs) + 1
    ref_c = torch.zeros(n, dtype=torch.float64)
    ref_r = torch.zeros(n, dtype=torch.float64)
    ordered = sorted(pairs, key=lambda tp: tp.length)
    batches = [ordered[i : i + micro] for i in range(0, len(ordered), micro)]
    was_training = model.training
    model.eval()
    for b, batch in enumerate(batches):
        if b % world == rank:
            mb = collate(batch, pad_id)
            sums, _ = response_logps(model, mb.input_ids.to(device), mb.attention_mask.to(device), mb.loss_mask.to(device), chunk,
                                     padding_free=padding_free)
            k = len(batch)
            ref_c[mb.index] = sums[:k].double().cpu()
            ref_r[mb.index] = sums[k:].double().cpu()
        if progress is not None:
            progress()
    model.train(was_training)
    return ref_c, ref_r


def load_reference(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not path.is_file():
        return None
    t = load_file(str(path))
    return t["chosen"], t["rejected"]


def save_reference(path: Path, ref_c: torch.Tensor, ref_r: torch.Tensor) -> None:
    with atomic_path(path) as tmp:
        save_file({"chosen": ref_c.contiguous(), "rejected": ref_r.contiguous()}, str(tmp))
