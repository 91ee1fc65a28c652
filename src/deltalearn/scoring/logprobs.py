"""Summed response log-probs without ever holding [rows, seq, vocab] float32 logits.

The decoder runs once over the micro-batch; the LM head then runs only on the hidden states of
positions that predict a response token, in chunks. A plain (unsharded, bias-free) head goes
through `HeadLogps`, which keeps only one log-sum-exp per position and, in backward, recomputes
each chunk's logits and turns them into gradients in place; any other head runs each chunk
under activation checkpointing.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .packing import pack_rows


def _causal_lm(model):
    """The transformers *ForCausalLM under a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _spans(n: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) ranges of at most `chunk` rows and near-equal sizes: 259 rows in chunks of 256 are
    130 + 129, not 256 + 3 (a 3-row head matmul runs at a tenth of the machine's speed)."""
    if n <= 0:
        return []
    parts = -(-n // max(chunk, 1))
    base, extra = divmod(n, parts)
    ends = [0]
    for i in range(parts):
        ends.append(ends[-1] + base + (i < extra))
    return list(zip(ends[:-1], ends[1:]))


def addable_grad(grad: torch.Tensor, dtype: torch.dtype) -> bool:
    """A .grad that a backward may add into in place: dense, contiguous, of the given dtype."""
    return grad.layout == torch.strided and grad.dtype == dtype and grad.is_contiguous()


class HeadLogps(torch.autograd.Function):
    """log p(target) = h.W[target] - logsumexp(h.W^T), chunk by chunk, float32 logits.

    Backward needs d/dlogits = g * (onehot(target) - softmax), built in the logits' own buffer: no
    zero-filled scatter, no stored log-softmax. By default one chunk is alive at a time and backward
    recomputes each chunk's logits; with `keep_bytes` large enough for [response tokens, vocab]
    float32, forward keeps the softmax instead and backward skips that matmul (one backward only).

    With `into_grad` (one process, no DDP/FSDP/DeepSpeed hooks on the weight's gradient), backward adds
    the weight's gradient into `weight.grad` itself instead of returning it. Autograd would otherwise
    make a new [vocab, hidden] gradient every micro-batch and, for a tied embedding with a sparse
    gradient, add the two out of place into a third (measured: 7-11 ms per micro-batch for SmolLM2,
    260-300 ms while the heap still grows)."""

    @staticmethod
    def forward(ctx, h, weight, targets, chunk: int, keep_bytes: int = 0, into_grad: bool = False):
        n, vocab = h.shape[0], weight.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=h.device)
        lse = torch.empty_like(out)
        keep = (any(ctx.needs_input_grad[:2]) and weight.dtype == torch.float32 and h.dtype == torch.float32
                and n * vocab * 4 <= keep_bytes)
        probs = torch.empty(n, vocab, dtype=torch.float32, device=h.device) if keep else None
        if keep:  # the whole [n, vocab] buffer exists anyway: one head matmul, no small trailing chunk
            torch.mm(h, weight.t(), out=probs)
        for s, e in _spans(n, chunk):
            logits = probs[s:e] if keep else torch.mm(h[s:e], weight.t()).float()
            lse[s:e] = torch.logsumexp(logits, dim=-1)
            out[s:e] = logits.gather(1, targets[s:e, None])[:, 0] - lse[s:e]
            if keep:
                logits.sub_(lse[s:e, None]).exp_()  # the softmax, in place
        ctx.save_for_backward(h, weight, targets, lse, *(() if probs is None else (probs,)))
        ctx.chunk, ctx.kept, ctx.used = chunk, keep, False
        ctx.param = weight if into_grad and weight.is_leaf and weight.dtype == torch.float32 else None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, targets, lse, *kept = ctx.saved_tensors
        if ctx.kept and ctx.used:
            raise RuntimeError("HeadLogps with kept probabilities supports one backward pass (no retain_graph)")
        ctx.used = True
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_w = None
        param = ctx.param if ctx.needs_input_grad[1] else None
        acc = param.grad if param is not None else None
        if acc is not None and not addable_grad(acc, torch.float32):
            param = acc = None  # an unusual .grad: leave the sum to autograd
        if acc is not None:
            grad_w = acc
        # Kept: the softmax of every position is in one buffer, so each gradient is one matmul.
        spans = [(0, h.shape[0])] if ctx.kept else _spans(h.shape[0], ctx.chunk)
        for s, e in spans:
            hs, g = h[s:e], grad_out[s:e].float()
            if ctx.kept:
                p = kept[0][s:e].mul_(-g[:, None])  # -g * softmax
            else:
                p = torch.mm(hs, weight.t()).float()
                p.sub_(lse[s:e, None]).exp_().mul_(-g[:, None])  # -g * softmax
            p.scatter_add_(1, targets[s:e, None], g[:, None])  # + g * onehot
            if grad_h is not None:
                grad_h[s:e] = torch.mm(p.to(weight.dtype), weight).to(h.dtype)
            if ctx.needs_input_grad[1]:
                if grad_w is None:
                    grad_w = torch.mm(p.t(), hs.float())
                else:
                    grad_w.addmm_(p.t(), hs.float())
        if ctx.needs_input_grad[1] and grad_w is None:
            grad_w = torch.zeros_like(weight, dtype=torch.float32)
        if param is not None:
            if acc is None:
                param.grad = grad_w
            grad_w = None
        return grad_h, (grad_w.to(weight.dtype) if grad_w is not None else None), None, None, None, None


def _plain_head(head) -> bool:
    """A bias-free nn.Linear whose weight is a whole local tensor (not a ZeRO-3 partition or DTensor)."""
    w = getattr(head, "weight", None)
    return (type(head) is torch.nn.Linear and head.bias is None and w is not None
            and not hasattr(w, "ds_id") and type(w.data) is torch.Tensor)


def _can_use_head_only(lm) -> bool:
    cfg = lm.config
    return getattr(cfg, "final_logit_softcapping", None) is None and getattr(cfg, "logit_scale", None) in (None, 1.0)


def response_logps(model, input_ids, attention_mask, loss_mask, chunk: int = 1024,
                   keep_bytes: int = 0, head_grad_in_place: bool = False,
                   padding_free: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (sum of response-token log-probs [rows], response token count [rows]) in float32.
    `head_grad_in_place`: see HeadLogps (only for a single process without gradient hooks).
    `padding_free`: the rows run packed into one (packing.py). Exact with any attention that honours
    packed `position_ids`; without packing.use_packed_attention, transformers masks a [L, L] block instead."""
    token_logps, rows, target_mask = _token_logps(model, input_ids, attention_mask, loss_mask, chunk, keep_bytes,
                                                  head_grad_in_place, padding_free)
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device).index_add(0, rows, token_logps)
    return sums, target_mask.sum(1).float()


@torch.no_grad()
def response_token_logps(model, input_ids, attention_mask, loss_mask, chunk: int = 1024) -> list[list[float]]:
    """Each row's response-token log-probs, in order (for judges that weigh tokens, e.g. loglik)."""
    token_logps, rows, _ = _token_logps(model, input_ids, attention_mask, loss_mask, chunk)
    out: list[list[float]] = [[] for _ in range(input_ids.shape[0])]
    for r, lp in zip(rows.tolist(), token_logps.tolist()):
        out[r].append(lp)
    return out


def _token_logps(model, input_ids, attention_mask, loss_mask, chunk: int = 1024, keep_bytes: int = 0,
                 head_grad_in_place: bool = False, padding_free: bool = False):
    """(log-prob of every response token [N], its row [N], the targets' mask [rows, T-1])."""
    lm = _causal_lm(model)
    target_mask = loss_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(target_mask)[target_mask]
    if _can_use_head_only(lm):
        if padding_free:
            packed = pack_rows(input_ids, attention_mask)
            index = packed.pop("index")
            hidden = lm.get_decoder()(**packed, use_cache=False).last_hidden_state[0]
            h = hidden[index[:, :-1][target_mask]]  # [N, H]: only positions that predict a response token
        else:
            hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            h = hidden[:, :-1][target_mask]
        head = lm.get_output_embeddings()
        if _plain_head(head):
            return HeadLogps.apply(h, head.weight, targets, chunk, keep_bytes, head_grad_in_place), rows, target_mask

        def chunk_logps(h_part, t_part):
            logits = head(h_part).float()
            return torch.gather(logits.log_softmax(-1), 1, t_part[:, None])[:, 0]

        parts = []
        for s, e in _spans(h.shape[0], chunk):
            h_part, t_part = h[s:e], targets[s:e]
            if torch.is_grad_enabled():
                parts.append(checkpoint(chunk_logps, h_part, t_part, use_reentrant=False))
            else:
                parts.append(chunk_logps(h_part, t_part))
        token_logps = torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)
    else:  # logits need the model's own post-processing: full forward, float32 log-softmax
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
        token_logps = torch.gather(logits[target_mask].float().log_softmax(-1), 1, targets[:, None])[:, 0]
    return token_logps, rows, target_mask


class ResponseLogps(torch.nn.Module):
    """The policy as one module whose forward returns response log-probs, so DDP / DeepSpeed / FSDP
    wrappers see every forward (their gradient hooks depend on it)."""

    def __init__(self, model, chunk: int = 1024, keep_bytes: int = 0, head_grad_in_place: bool = False,
                 padding_free: bool = False):
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.keep_bytes = keep_bytes
        self.head_grad_in_place = head_grad_in_place
        self.padding_free = padding_free

    def forward(self, input_ids, attention_mask, loss_mask):
        return response_logps(self.model, input_ids, attention_mask, loss_mask, self.chunk, self.keep_bytes,
                              self.head_grad_in_place, self.padding_free)
