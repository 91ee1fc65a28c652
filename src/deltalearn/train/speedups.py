"""Two switches that make a training step cheaper without changing what it computes.

Both were found by profiling a step of the embedded model on the CPU (docs/train.md, BENCHMARKS.md):
- the input embedding's backward builds a dense [vocab, hidden] zero gradient every micro-batch
  (113 MB for SmolLM2, 5% of a step in zero-filling fresh pages) to scatter a few hundred rows into;
- outside the matmuls, a decoder layer is a string of small element-wise kernels (RMSNorm, rotary,
  SiLU x up, residual adds) that torch.compile fuses.
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
    from .logprobs import _plain_head

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
