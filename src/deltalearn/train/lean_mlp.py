"""A gated MLP, down(silu(gate(x)) * up(x)), as one autograd function that keeps less for backward.

Run as three nn.Linear and two element-wise ops, autograd keeps four [tokens, intermediate] tensors
per layer for backward: the gate's output (for SiLU), SiLU's output and the up projection's output
(for the product), and the product (the down projection's input). That is half of all the
activations a Llama-style decoder keeps (SmolLM2: 6,144 of ~12,000 floats per token and layer).
This function keeps only x, gate(x) and up(x) and recomputes SiLU and the product in backward: two
element-wise passes, no matmul. The freed memory is what lets a micro-batch hold two pairs on the
CPU preset; bigger micro-batches are what make the matmuls fast there (BENCHMARKS.md).

With `into_grad` (one process, no DDP/FSDP/DeepSpeed hooks on the gradients), backward adds the
weight gradients into each weight's `.grad` with one addmm instead of returning new tensors that
autograd then adds in a second pass over memory (as `logprobs.HeadLogps` does for the LM head).
"""

from __future__ import annotations

import types

import torch

from ..scoring.logprobs import addable_grad


def _accumulate(weight: torch.Tensor, dy: torch.Tensor, x: torch.Tensor):
    """dW = dy^T x, added into weight.grad in place when that is a plain float32 gradient; returns
    what backward must hand to autograd (None when it was added here)."""
    g = weight.grad
    if g is None:
        weight.grad = torch.mm(dy.t(), x)
        return None
    if not addable_grad(g, weight.dtype):
        return torch.mm(dy.t(), x)  # an unusual .grad: leave the sum to autograd
    g.addmm_(dy.t(), x)
    return None


class GatedMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_gate, w_up, w_down, into_grad: bool):
        x2 = x.reshape(-1, x.shape[-1])
        gate, up = torch.mm(x2, w_gate.t()), torch.mm(x2, w_up.t())
        y = torch.mm(torch.nn.functional.silu(gate).mul_(up), w_down.t())
        ctx.save_for_backward(x2, gate, up, w_gate, w_up, w_down)
        # The parameters themselves: a saved tensor comes back from ctx.saved_tensors as another tensor
        # object, and a .grad set on that would be lost.
        ctx.params = (w_gate, w_up, w_down) if into_grad else None
        ctx.x_shape = x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x2, gate, up, w_gate, w_up, w_down = ctx.saved_tensors
        if ctx.params is not None:
            w_gate, w_up, w_down = ctx.params
        dy = dy.reshape(-1, dy.shape[-1])
        silu = torch.nn.functional.silu(gate)
        d_prod = torch.mm(dy, w_down)
        grads = [None, None, None]
        if ctx.needs_input_grad[3]:
            prod = silu * up
            grads[2] = _accumulate(w_down, dy, prod) if ctx.params else torch.mm(dy.t(), prod)
            del prod
        d_up = silu.mul_(d_prod)  # silu is not needed after this
        d_gate = torch.ops.aten.silu_backward(d_prod.mul_(up), gate)
        del d_prod
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.mm(d_gate, w_gate).addmm_(d_up, w_up).view(ctx.x_shape)
        for i, (w, d) in enumerate(((w_gate, d_gate), (w_up, d_up))):
            if ctx.needs_input_grad[1 + i]:
                grads[i] = _accumulate(w, d, x2) if ctx.params else torch.mm(d.t(), x2)
        return dx, grads[0], grads[1], grads[2], None


def _plain_linear(m) -> bool:
    return (type(m) is torch.nn.Linear and m.bias is None and type(m.weight.data) is torch.Tensor
            and not hasattr(m.weight, "ds_id"))  # not a DeepSpeed ZeRO-3 partition


def _is_gated_silu_mlp(m) -> bool:
    act = getattr(m, "act_fn", None)
    return (all(_plain_linear(getattr(m, n, None)) for n in ("gate_proj", "up_proj", "down_proj"))
            and type(act).__name__ in ("SiLU", "SiLUActivation"))


def _forward(self, x):
    return GatedMLP.apply(x, self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight, self._into_grad)


def use_lean_mlp(lm, into_grad: bool = False) -> int:
    """Switch every gated SiLU MLP of `lm` (gate_proj, up_proj, down_proj bias-free nn.Linear, SiLU:
    Llama, Mistral, Qwen2/3, SmolLM...) to GatedMLP. Returns how many were switched; other MLPs,
    and LoRA-wrapped projections, are left as they are."""
    n = 0
    for m in lm.modules():
        if _is_gated_silu_mlp(m):
            m._into_grad = into_grad
            m.forward = types.MethodType(_forward, m)
            n += 1
    return n
