"""The GPU check: the project's training kernels in bfloat16 on one CUDA device, in a few minutes.

Ready for the day a GPU is lent: run from a bare machine that has torch, transformers and accelerate
(nothing else, no network; model weights are random, built from the shape configs in benchmarks/gpu/):

    PYTHONPATH=src python benchmarks/gpu_check.py --out gpu_check.json      # or: bash benchmarks/gpu_check.sh

For each shape (SmolLM2-135M, a Llama 3.2 1B shape) it measures the bf16 matmul peak of the device,
then trains length-normalised DPO with the project's own pieces (response log-probs through the
fused head, the dpo_norm loss, fused AdamW on float32 master weights under bf16 autocast, as the
`paper` preset runs) for a few steps, and reports tokens/s, MFU against the measured peak, peak
memory and the losses (finite, falling). With deepspeed importable it adds a ZeRO-2 run of the small
shape in one process; with pydantic and rich importable, the project's whole `train()` loop with the
`paper` preset. Everything it measures goes into one JSON. Without a GPU it refuses in one line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--shapes", nargs="+", default=["smollm2-135m", "llama-1b"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=8, help="pairs per step (one micro-batch)")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--answer-tokens", type=int, default=512)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); this check needs a GPU", file=sys.stderr)
        return 2
    import transformers

    t0 = time.perf_counter()
    report = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
              "device": torch.cuda.get_device_name(0),
              "memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1), "runs": []}
    from deltalearn.train.flops import PeakProbe

    probe = PeakProbe("cuda", torch.bfloat16)
    report["bf16_matmul_peak_tflops"] = round(max(probe() for _ in range(5)) / 1e12, 1)
    print(f"device {report['device']}, bf16 matmul peak {report['bf16_matmul_peak_tflops']} TFLOP/s", flush=True)
    for shape in args.shapes:
        report["runs"].append(dpo_run(shape, args, probe))
        _write(args.out, report)
    report["runs"].append(zero2_run(args))
    report["runs"].append(loop_run(args))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    _write(args.out, report)
    for r in report["runs"]:
        print(json.dumps(r), flush=True)
    ok = all(r.get("status") in ("ok", "skipped") for r in report["runs"])
    print(f"gpu_check: {'ok' if ok else 'FAILED'} in {report['seconds']} s; wrote {args.out}")
    return 0 if ok else 1


def _write(path, report) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def _model(shape: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = json.loads((HERE / "gpu" / f"{shape}.json").read_text())
    cfg.pop("architectures", None)
    cfg.pop("model_type", None)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="sdpa"))
    return model


def _batch(vocab: int, args, device):
    """Random pairs as the loop collates them: chosen rows, then rejected rows, responses masked in."""
    import torch

    g = torch.Generator().manual_seed(0)
    k, p, a = args.pairs, args.prompt_tokens, args.answer_tokens
    prompt = torch.randint(3, vocab, (k, p), generator=g)
    ids = torch.cat([torch.cat([prompt, torch.randint(3, vocab, (k, a), generator=g)], 1),
                     torch.cat([prompt, torch.randint(3, vocab, (k, a), generator=g)], 1)])
    mask = torch.ones_like(ids)
    loss_mask = torch.zeros_like(ids)
    loss_mask[:, p:] = 1
    return ids.to(device), mask.to(device), loss_mask.to(device)


def dpo_run(shape: str, args, probe) -> dict:
    import torch

    from deltalearn.scoring.logprobs import ResponseLogps, response_logps
    from deltalearn.train.flops import model_shape, train_flops
    from deltalearn.train.losses import dpo_norm_loss

    try:
        model = _model(shape)
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ids, mask, loss_mask = _batch(model.config.vocab_size, args, "cuda")
        k = args.pairs
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            ref, lens = response_logps(model, ids, mask, loss_mask, 1024)
        model.train()
        wrapper = ResponseLogps(model, 1024)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, betas=(0.9, 0.95), fused=True)
        flops = train_flops(model_shape(model), mask.sum(1).tolist(), int(loss_mask[:, 1:].sum()))
        losses, times, peaks = [], [], []
        torch.cuda.reset_peak_memory_stats()
        for step in range(args.steps + 2):  # two warm-up steps, not timed
            torch.cuda.synchronize()
            s = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logp, _ = wrapper(ids, mask, loss_mask)
            loss, _, _ = dpo_norm_loss(logp[:k], logp[k:], ref[:k], ref[k:], lens[:k], lens[k:], 5.0)
            loss.mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if step >= 2:
                times.append(time.perf_counter() - s)
                peaks.append(probe())
            losses.append(float(loss.mean()))
        secs = sum(times)
        tokens = int(mask.sum()) * len(times)
        mfu = flops * len(times) / secs / (sum(peaks) / len(peaks))
        ok = all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
        print(f"{shape}: {tokens / secs:,.0f} tok/s, MFU {mfu:.1%} (gradient checkpointing recomputes one forward, "
              f"not counted), peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GB, loss {losses[0]:.4f} -> {losses[-1]:.4f}",
              flush=True)
        return {"run": f"dpo_norm bf16 {shape}", "status": "ok" if ok else "failed", "tokens_per_s": round(tokens / secs),
                "mfu": round(mfu, 4), "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "params": sum(p.numel() for p in model.parameters()), "losses": [round(x, 5) for x in losses]}
    except Exception as e:  # report and go on: one failed shape must not hide the others' figures
        return {"run": f"dpo_norm bf16 {shape}", "status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
    finally:
        torch.cuda.empty_cache()


def zero2_run(args) -> dict:
    try:
        import deepspeed
    except ImportError:
        return {"run": "deepspeed zero-2", "status": "skipped", "why": "deepspeed is not installed"}
    import torch

    from deltalearn.scoring.logprobs import ResponseLogps

    try:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        deepspeed.init_distributed()
        model = _model("smollm2-135m")
        model.config.use_cache = False
        wrapper = ResponseLogps(model, 1024)
        config = {"train_micro_batch_size_per_gpu": args.pairs, "gradient_accumulation_steps": 1, "bf16": {"enabled": True},
                  "zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": 1e-6}},
                  "gradient_clipping": 1.0}
        engine, _, _, _ = deepspeed.initialize(model=wrapper, model_parameters=wrapper.parameters(), config=config)
        ids, mask, loss_mask = _batch(model.config.vocab_size, args, engine.device)
        losses, times = [], []
        for step in range(args.steps + 2):
            torch.cuda.synchronize()
            s = time.perf_counter()
            logp, lens = engine(ids, mask, loss_mask)
            loss = -(logp / lens).mean()  # an SFT-style objective: ZeRO-2's sharding, not the loss, is under test
            engine.backward(loss)
            engine.step()
            torch.cuda.synchronize()
            if step >= 2:
                times.append(time.perf_counter() - s)
            losses.append(float(loss))
        ok = all(math.isfinite(x) for x in losses)
        return {"run": "deepspeed zero-2 smollm2-135m", "status": "ok" if ok else "failed", "deepspeed": deepspeed.__version__,
                "tokens_per_s": round(int(mask.sum()) * len(times) / sum(times)), "losses": [round(x, 5) for x in losses]}
    except Exception as e:
        return {"run": "deepspeed zero-2", "status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}


def loop_run(args) -> dict:
    """The project's own train() with the `paper` preset on a saved random 135M, if its dependencies are here."""
    try:
        import pydantic  # noqa: F401
        import rich  # noqa: F401
    except ImportError as e:
        return {"run": "deltalearn train (paper preset)", "status": "skipped", "why": f"{e.name} is not installed"}
    import tempfile

    try:
        from transformers import PreTrainedTokenizerFast
        from tokenizers import Tokenizer, models, pre_tokenizers

        from deltalearn.train.config import TrainConfig
        from deltalearn.train.loop import train

        tmp = Path(tempfile.mkdtemp())
        model = _model("smollm2-135m")
        model.save_pretrained(tmp / "model")
        vocab = {f"w{i}": i for i in range(model.config.vocab_size)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w1", pad_token="w2", unk_token="w0")
        fast.chat_template = "{% for m in messages %}w3 {{ m['content'] }} w1 {% endfor %}{% if add_generation_prompt %}w3 {% endif %}"
        fast.save_pretrained(tmp / "model")
        rows = [{"prompt": [{"role": "user", "content": " ".join(f"w{(i * 7 + j) % 900 + 4}" for j in range(64))}],
                 "chosen": [{"role": "assistant", "content": " ".join(f"w{(i + j) % 900 + 4}" for j in range(128))}],
                 "rejected": [{"role": "assistant", "content": " ".join(f"w{(i * 3 + j) % 900 + 4}" for j in range(128))}]}
                for i in range(64)]
        (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = TrainConfig.model_validate({"preset": "paper", "model": {"name": "random-135m", "model": str(tmp / "model")},
                                          "data": str(tmp / "pairs.jsonl"), "out_dir": str(tmp / "run"), "max_steps": 2,
                                          "tracker": "none"})
        s = train(cfg)
        ok = s["steps"] == 2 and math.isfinite(s["last"]["loss"])
        return {"run": "deltalearn train (paper preset, bf16)", "status": "ok" if ok else "failed",
                "tokens_per_s": round(s["mean_tokens_per_s"] or 0), "mfu": s["mean_mfu"], "loss": s["last"]["loss"]}
    except Exception as e:
        return {"run": "deltalearn train (paper preset)", "status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}


if __name__ == "__main__":
    sys.exit(main())
