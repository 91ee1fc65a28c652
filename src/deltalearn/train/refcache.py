"""Reference log-probs: one forward-only pass before training, cached on disk at two levels.

- Per dataset: keyed by (initial model fingerprint, dataset fingerprint, tokenisation settings), so a
  resumed run reads the values computed from the starting checkpoint, never from the half-trained policy.
- Per sequence: one store per starting model, keyed by the token ids of prompt + response. Studies
  that train one model on several datasets sharing answers (DPO 3>2, its reverse 2>3 and the 3>3
  control share every chosen or rejected row) then run the forward pass once per distinct sequence.

The forward pass runs on single sequences sorted by length (not on pairs), so a stored value and a
fresh one differ only by the rounding of a different micro-batch. No reference model stays in memory
while training.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_path
from ..scoring.logprobs import response_logps
from ..scoring.span import TokenizedPair, collate

SIDES = ("chosen", "rejected")


def sequence_key(prompt: list[int], response: list[int]) -> bytes:
    """16-byte digest of prompt and response ids (the split point included)."""
    ids = np.asarray([len(prompt), *prompt, *response], dtype=np.int64)
    return hashlib.blake2b(ids.tobytes(), digest_size=16).digest()


@torch.no_grad()
def compute_reference(model, pairs: list[TokenizedPair], pad_id: int, *, micro: int, chunk: int,
                      rank: int = 0, world: int = 1, device="cpu", progress=None,
                      padding_free: bool = False, known: dict[bytes, float] | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected for every pair, indexed by dataset row.
    Sequences in `known` are read, not computed; a sequence that occurs twice is computed once.

    Each process does every `world`-th micro-batch (of 2 x micro sequences); the caller sums the
    partial results, so known values are filled in by rank 0 only."""
    known = known or {}
    n = max(tp.index for tp in pairs) + 1
    table = {side: torch.zeros(n, dtype=torch.float64) for side in SIDES}
    where: dict[bytes, list[tuple[str, int]]] = {}
    todo: dict[bytes, TokenizedPair] = {}
    for tp in pairs:
        for side, response in zip(SIDES, (tp.chosen, tp.rejected)):
            key = sequence_key(tp.prompt, response)
            if key in known:
                if rank == 0:
                    table[side][tp.index] = known[key]
                continue
            where.setdefault(key, []).append((side, tp.index))
            todo.setdefault(key, TokenizedPair(len(todo), tp.prompt, response, []))
    keys = sorted(todo, key=lambda k: (len(todo[k].prompt) + len(todo[k].chosen), todo[k].index))
    size = 2 * micro
    batches = [keys[i : i + size] for i in range(0, len(keys), size)]
    was_training = model.training
    model.eval()
    for b, batch in enumerate(batches):
        if b % world == rank:
            mb = collate([todo[k] for k in batch], pad_id, rejected=False)
            sums, _ = response_logps(model, mb.input_ids.to(device), mb.attention_mask.to(device), mb.loss_mask.to(device), chunk,
                                     padding_free=padding_free)
            for key, value in zip(batch, sums.double().cpu().tolist()):
                for side, index in where[key]:
                    table[side][index] = value
        if progress is not None:
            progress()
    model.train(was_training)
    return table["chosen"], table["rejected"]


def sequence_values(pairs: list[TokenizedPair], ref_c: torch.Tensor, ref_r: torch.Tensor) -> dict[bytes, float]:
    """The whole table by sequence key, for the per-sequence store."""
    out = {}
    for tp in pairs:
        out[sequence_key(tp.prompt, tp.chosen)] = float(ref_c[tp.index])
        out[sequence_key(tp.prompt, tp.rejected)] = float(ref_r[tp.index])
    return out


def load_reference(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not path.is_file():
        return None
    t = load_file(str(path))
    return t["chosen"], t["rejected"]


def save_reference(path: Path, ref_c: torch.Tensor, ref_r: torch.Tensor) -> None:
    with atomic_path(path) as tmp:
        save_file({"chosen": ref_c.contiguous(), "rejected": ref_r.contiguous()}, str(tmp))


def load_sequences(path: Path) -> dict[bytes, float]:
    """The per-sequence store of one starting model (empty when absent)."""
    if not path.is_file():
        return {}
    t = load_file(str(path))
    return {bytes(k): v for k, v in zip(t["keys"].numpy(), t["values"].tolist())}


def save_sequences(path: Path, new: dict[bytes, float]) -> None:
    """Merge `new` into the store (atomic; a lost race only loses cache entries)."""
    if not new:
        return
    merged = load_sequences(path) | new
    keys = torch.from_numpy(np.frombuffer(b"".join(merged), dtype=np.uint8).reshape(len(merged), 16).copy())
    with atomic_path(path) as tmp:
        save_file({"keys": keys, "values": torch.tensor(list(merged.values()), dtype=torch.float64)}, str(tmp))
