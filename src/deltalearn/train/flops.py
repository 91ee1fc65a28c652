"""Model FLOPs of a training step and the machine's measured matmul peak, for MFU."""

from __future__ import annotations

import json
import os
import platform
import time

import torch

from ..io import write_json_atomic


def model_shape(lm) -> dict:
    cfg = lm.config
    layers = cfg.num_hidden_layers
    hidden = cfg.hidden_size
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    decoder = lm.get_decoder()
    embed = sum(p.numel() for p in decoder.get_input_embeddings().parameters())
    dec_params = sum(p.numel() for p in decoder.parameters()) - embed
    return {"layers": layers, "hidden": hidden, "attn_dim": heads * head_dim, "vocab": cfg.vocab_size, "decoder_params": dec_params}


def forward_flops(shape: dict, row_lengths: list[int], response_tokens: int) -> float:
    """Forward FLOPs of the decoder on the real (unpadded) tokens, causal attention, and of the LM
    head on the response positions only (the only ones we compute it for)."""
    tokens = sum(row_lengths)
    dense = 2.0 * shape["decoder_params"] * tokens
    attention = sum(2.0 * shape["layers"] * shape["attn_dim"] * t * t for t in row_lengths)  # QK^T and AV, causal half
    head = 2.0 * shape["hidden"] * shape["vocab"] * response_tokens
    return dense + attention + head


def train_flops(shape: dict, row_lengths: list[int], response_tokens: int, frozen_base: bool = False) -> float:
    """Backward costs twice the forward: gradients of the activations and of the weights. A frozen base
    (LoRA) skips the weights' half; the adapter's own FLOPs are left out (rank r << hidden)."""
    return (2.0 if frozen_base else 3.0) * forward_flops(shape, row_lengths, response_tokens)


def matmul_peak(cache_file, dtype=torch.float32, n: int = 2048, seconds: float = 0.4, trials: int = 5) -> float:
    """FLOP/s of a large float32 matmul with the current thread count: the best of a few short
    trials (the machine's peak, not its average under other load), measured once and cached."""
    key = f"{platform.processor() or platform.machine()}|{os.cpu_count()}|{torch.get_num_threads()}|{dtype}|{torch.__version__}"
    cached = {}
    if os.path.exists(cache_file):
        try:
            cached = json.loads(open(cache_file).read())
        except (OSError, ValueError):
            cached = {}
    if key in cached:
        return cached[key]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    peak = 0.0
    for _ in range(trials):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            torch.mm(a, b)
            reps += 1
        peak = max(peak, 2.0 * n**3 * reps / (time.perf_counter() - t0))
    cached[key] = peak
    write_json_atomic(cache_file, cached)
    return peak


class PeakProbe:
    """The matmul peak of this device in the training dtype, measured around every step.

    A shared machine's peak drifts (here 135-180 GFLOP/s float32 within minutes, with neighbours'
    load), so MFU against a peak measured at another moment is off by as much. A probe is the best
    of `trials` single n x n matmuls, n picked once so one matmul takes about `target_s` (1024 for
    float32 on a 2-core CPU: ~0.1 s per probe; at most 4096, two 32 MB bfloat16 inputs kept on a GPU).
    Its inputs come from their own generator: probing never moves the training's random state."""

    def __init__(self, device, dtype, n_max: int = 4096, target_s: float = 0.012, trials: int = 5):
        self.device, self.dtype, self.trials = torch.device(device), dtype, trials
        self.n = 128
        while True:
            self._inputs()
            if self.n >= n_max or self._once() >= target_s:
                break
            self.n *= 2

    def _inputs(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(self.n, self.n, generator=g).to(self.device, self.dtype)
        self.b = torch.randn(self.n, self.n, generator=g).to(self.device, self.dtype)
        self._once()  # warm-up: kernels picked, buffers allocated

    def _sync(self) -> None:
        if self.device.type != "cpu":
            torch.accelerator.synchronize(self.device)

    def _once(self) -> float:
        self._sync()
        t0 = time.perf_counter()
        torch.mm(self.a, self.b)
        self._sync()
        return time.perf_counter() - t0

    def __call__(self) -> float:
        """FLOP/s of the fastest of `trials` matmuls, now."""
        return 2.0 * self.n**3 / min(self._once() for _ in range(self.trials))
