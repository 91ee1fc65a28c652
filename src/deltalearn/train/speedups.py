"""Switches that make a training step cheaper without changing what it computes.

All three were found by profiling a step of the embedded model on the CPU (docs/train.md, BENCHMARKS.md):
- the input embedding's backward builds a dense [vocab, hidden] zero gradient every micro-batch
  (113 MB for SmolLM2, 5% of a step in zero-filling fresh pages) to scatter a few hundred rows into;
- outside the matmuls, a decoder layer is a string of small element-wise kernels (RMSNorm, rotary,
  SiLU x up, residual adds) that torch.compile fuses;
- torch.optim creates Adam's moments inside the first step: 1 GB for SmolLM2, 2 s of step 1 on the
  CPU, and the activations of step 2 then land in fresh memory (two slow micro-batches more).
  Allocating them at set-up, as DeepSpeed and FSDP do, leaves every step the same work.
"""

from __future__ import annotations

import os
import shutil

import torch


def sparse_tied_embedding(lm) -> bool:
    """Give the input embedding a sparse gradient when it shares its weight with a plain LM head.

    The head's backward (HeadLogps) already returns a dense gradient for that weight, so autograd
    adds the embedding's few rows into it and the optimizer still sees a dense gradient. An untied
    embedding keeps its dense gradient: AdamW does not take sparse ones."""
    from ..scoring.logprobs import _plain_head

    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    if (type(emb) is not torch.nn.Embedding or head is None or not _plain_head(head)
            or emb.weight is not head.weight or not emb.weight.requires_grad or emb.max_norm is not None):
        return False
    emb.sparse = True
    return True


def have_cpp_compiler() -> bool:
    """torch.compile's CPU backend writes C++ and builds it with the system compiler."""
    return any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "clang++", "c++"))


def compile_decoder_layers(lm) -> int:
    """Compile each decoder layer in place (module.compile keeps parameter names and state_dict keys),
    with dynamic shapes so that every sequence length reuses one graph. Returns how many were compiled.
    Inductor caches compiled code on disk (TORCHINDUCTOR_CACHE_DIR, by default
    /tmp/torchinductor_$USER): a later run of the same architecture compiles in seconds."""
    layers = getattr(lm.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        return 0
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def allocate_optimizer_state(optimizer) -> None:
    """Create the optimizer's state now instead of in its first step, through its own code path: one
    step with zero gradients at lr 0 (AdamW: moments 0 + 0, parameters moved by lr * ... = 0, weight
    decay multiplies by 1 - 0), then the step counters back to 0. The state is then what the first
    real step would have created (tested: same trajectory)."""
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    if not params or any(optimizer.state.get(p) for p in params):
        return
    lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for g, lr in zip(optimizer.param_groups, lrs):
        g["lr"] = lr
    for st in optimizer.state.values():
        step = st.get("step")
        if torch.is_tensor(step):
            step.zero_()
        elif step is not None:
            st["step"] = 0
