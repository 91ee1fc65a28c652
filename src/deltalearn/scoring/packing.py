"""Padding-free forwards: a micro-batch's rows packed end to end into one row, attention per row.

A micro-batch of one pair is two rows of different lengths; padded, the shorter one computes on
padding (5.6% of the tokens of the 64-pair benchmark). Packed, every matmul sees only real tokens,
positions restart at 0 for each row (rotary embeddings as unpadded), and attention runs causally
inside each row: the boundaries travel to the attention function as `cu_seq_lens_q`, the keyword
transformers' models already pass through for packed FlashAttention batches (TRL's `padding_free`,
OpenRLHF's `packing_samples`). On the CPU, plain causal sdpa per row, without a mask, replaces one
masked sdpa over the padded rows; a packed [L, L] block mask would instead make attention cost grow
with the square of the packed length.

The attention function is registered with transformers under `PACKED`; a model switched to it
behaves exactly like `sdpa` for every call that does not pass row boundaries (reference pass,
evaluation, generation), because the mask is built the sdpa way and the call goes to sdpa.
"""

from __future__ import annotations

import torch

PACKED = "deltalearn_packed"


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     cu_seq_lens_q: torch.Tensor | None = None, **kwargs):
    """query [1, heads, L, d], key/value [1, kv heads, L, d] of packed rows -> ([1, L, heads, d], None)."""
    if cu_seq_lens_q is None or query.shape[0] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    bounds = cu_seq_lens_q.tolist()
    outs = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout, scale=scaling, is_causal=True,
            enable_gqa=gqa)
        for s, e in zip(bounds[:-1], bounds[1:]) if e > s
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def use_packed_attention(lm) -> bool:
    """Switch a causal LM to the packed attention function when its attention is plain causal sdpa
    (no sliding window, no soft-capping, no attention sinks). Returns whether it did."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    cfg = lm.config
    windowed = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True)
    mixed = set(getattr(cfg, "layer_types", None) or ["full_attention"]) != {"full_attention"}
    if cfg._attn_implementation not in ("sdpa", PACKED) or windowed or mixed or getattr(cfg, "attn_logit_softcapping", None):
        return False
    AttentionInterface.register(PACKED, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED, sdpa_mask)
    lm.set_attn_implementation(PACKED)
    return True


def pack_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """Right-padded rows -> the decoder's keyword arguments for one packed row, plus `index`: for
    every padded position its position in the packed row (-1 on padding)."""
    keep = attention_mask.bool()
    lengths = keep.sum(1)
    starts = torch.cumsum(lengths, 0) - lengths
    index = torch.full_like(input_ids, -1)
    index[keep] = torch.arange(int(lengths.sum()), device=input_ids.device)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)[keep]
    cu = torch.cat([starts, lengths.sum()[None]]).to(torch.int32)
    longest = int(lengths.max())
    return {
        "input_ids": input_ids[keep][None], "position_ids": positions[None], "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
        "max_length_q": longest, "max_length_k": longest, "index": index,
    }
