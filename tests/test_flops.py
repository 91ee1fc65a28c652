"""The FLOP count behind MFU (train/flops.py) against an independent counter, torch's FlopCounterMode,
on the tiny model: the reference pass (forward only) and a training step (forward and backward)."""

import pytest
import torch

from deltalearn.train.batching import collate, tokenize_dataset
from deltalearn.train.flops import forward_flops, model_shape, train_flops
from deltalearn.scoring.logprobs import ResponseLogps
from deltalearn.scoring.packing import use_packed_attention
from test_train import synthetic_pairs


def _counted(fn) -> dict:
    """FLOPs by kind as torch counts them. Its table has no entry for the CPU flash-attention kernel,
    so that op is given torch's own sdpa formulas (which count attention whole, causal or not)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad_out, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(grad_out, q, k, v),
    }
    with fc.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    ops = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    attention = sum(v for k, v in ops.items() if "attention" in k)
    return {"matmul": sum(ops.values()) - attention, "attention": attention, "total": sum(ops.values())}


def _setup(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    assert use_packed_attention(model)  # rows packed without padding: every matmul runs on real tokens only
    model.train()
    mb = collate(tokenize_dataset(tok, synthetic_pairs(6)), tok.pad_token_id)
    rows, response = mb.attention_mask.sum(1).tolist(), int(mb.loss_mask.sum())
    # keep the head's softmax (no recomputation in backward): model FLOPs, as MFU counts them
    wrapper = ResponseLogps(model, chunk=64, keep_bytes=1 << 30, padding_free=True)
    return model, mb, rows, response, wrapper


def test_the_forward_count_matches_torchs_counter_up_to_the_stated_conventions(tiny_model_dir):
    model, mb, rows, response, wrapper = _setup(tiny_model_dir)
    shape = model_shape(model)
    with torch.no_grad():  # the reference pass
        counted = _counted(lambda: wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask))
    ours = forward_flops(shape, rows, response)
    attention_ours = sum(2.0 * shape["layers"] * shape["attn_dim"] * t * t for t in rows)
    # The matmuls (every linear layer on the real tokens, the head on response positions only) agree
    # exactly, once our charge of 2 FLOPs per token for the RMSNorm weights (no matmul) is taken out.
    norms = sum(p.numel() for n, p in model.get_decoder().named_parameters() if "norm" in n)
    assert counted["matmul"] == pytest.approx(ours - attention_ours - 2.0 * norms * sum(rows), rel=1e-12)
    # Attention: torch counts QK^T and AV whole; we count the causal half that does useful work.
    assert counted["attention"] == pytest.approx(2.0 * attention_ours, rel=1e-12)


def test_a_training_step_costs_three_forwards_as_the_count_assumes(tiny_model_dir):
    model, mb, rows, response, wrapper = _setup(tiny_model_dir)
    with torch.no_grad():
        forward = _counted(lambda: wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask))

    def step():
        logp, _ = wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask)
        logp.sum().backward()

    trained = _counted(step)
    # Backward costs twice the forward for the linear layers and the head (input and weight gradients);
    # torch charges sdpa's backward 2.5x its forward (a recomputed QK^T), which the MFU convention leaves out.
    assert trained["matmul"] == pytest.approx(3.0 * forward["matmul"], rel=1e-12)
    assert trained["attention"] == pytest.approx(3.5 * forward["attention"], rel=1e-12)
    assert train_flops(model_shape(model), rows, response) == 3.0 * forward_flops(model_shape(model), rows, response)


def test_a_frozen_base_costs_two_forwards(tiny_model_dir):
    """LoRA: the base's weights get no gradients, so backward is the activations' half only."""
    model, mb, rows, response, wrapper = _setup(tiny_model_dir)
    with torch.no_grad():
        forward = _counted(lambda: wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask))
    model.requires_grad_(False)
    model.enable_input_require_grads()  # what peft does: gradients still flow back through every layer

    def step():
        logp, _ = wrapper(mb.input_ids, mb.attention_mask, mb.loss_mask)
        logp.sum().backward()

    trained = _counted(step)
    assert trained["matmul"] == pytest.approx(2.0 * forward["matmul"], rel=1e-12)
    shape = model_shape(model)
    assert train_flops(shape, rows, response, frozen_base=True) == 2.0 * forward_flops(shape, rows, response)
