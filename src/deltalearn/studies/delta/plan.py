"""The dry run of a delta study: what it would compute (pairs, tokens, FLOPs, GPU-hours from a stated
throughput) and the exact commands that run it stage by stage on a GPU cluster. Nothing is loaded.

FLOPs follow the usual dense-transformer estimate (Kaplan et al.): a forward pass costs 2 x parameters
per token, training 6 x (forward + backward; 4 x under LoRA, whose frozen base needs no weight
gradients); the frozen reference adds one forward per token. The
throughput is an assumption stated in the recipe (`plan:`), not a measurement.
"""

from __future__ import annotations

import shlex

from pydantic import BaseModel, ConfigDict, Field

from ...train.methods import METHODS


class PlanSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gpu: str = Field(default="H100-80GB-SXM", description="The GPU's name, a label in the plan's table.")
    gpus: int = Field(default=8, ge=1, description="GPUs to run on: training commands launch this many processes; wall time = GPU-hours / gpus.")
    peak_tflops: float = Field(default=989.0, gt=0, description="Peak TFLOP/s per GPU, bf16 dense (the default is the H100 SXM datasheet's).")
    # DeepSpeed ZeRO-1 + gradient checkpointing on 8B: an assumption
    train_mfu: float = Field(
        default=0.35, gt=0, le=1, description="Assumed share of peak_tflops reached in training (model FLOPs utilisation), in (0, 1].")
    # vLLM greedy decoding is memory-bound: an assumption
    generate_mfu: float = Field(
        default=0.10, gt=0, le=1, description="Assumed share of peak_tflops reached in generation (memory-bound decoding), in (0, 1].")
    prompts: int | None = Field(default=None, gt=0, description="Prompts to plan for; null = the recipe's prompts.limit.")
    prompt_tokens: int = Field(default=200, gt=0, description="Mean tokens per prompt.")
    response_tokens: int = Field(default=500, gt=0, description="Mean tokens per answer.")
    accelerate_config: str = Field(
        default="configs/accelerate/zero1.yaml", description="The accelerate config file the printed training commands launch with.")
    harness: str | None = Field(
        default="olmes", description="Harness the printed commands run the paper's benchmarks with: olmes or lm-eval; null = none.")


def local_size(spec) -> int | None:
    """Parameter count of a local tier (embedded or a local directory) from its config alone,
    on the meta device, minus dropped layers; None for a hub id (not reachable offline)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ...models.loading import convert_gguf, resolve_source

    kind, gguf, location = resolve_source(spec)
    if kind == "hub":
        return None
    path = convert_gguf(gguf) if kind == "gguf" else location
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if spec.degrade and spec.degrade.drop_layers:
        layers = model.get_decoder().layers
        total -= sum(sum(p.numel() for p in layers[i].parameters()) for i in spec.degrade.drop_layers)
    return total


def local_machine(cfg) -> PlanSettings:
    """Without a `plan:` block: the local machine, its measured float32 matmul peak, and the utilisation
    measured here (training ~60% MFU, batched generation ~20%); answers at their token limit."""
    from ...models.loading import cache_dir
    from ...train.flops import matmul_peak

    return PlanSettings(gpu="local CPU", gpus=1, peak_tflops=matmul_peak(cache_dir() / "matmul_peak.json") / 1e12,
                        train_mfu=0.6, generate_mfu=0.2, prompt_tokens=40,
                        response_tokens=cfg.generate.settings.max_new_tokens, accelerate_config="configs/accelerate/ddp.yaml",
                        harness=None)


def plan_study(cfg, recipe_path: str, overrides: list[str] | None = None) -> dict:
    """Rows per stage with tokens, FLOPs and GPU-hours, and the commands, for a DeltaStudy `cfg`.
    `overrides` (the --set values the plan was made with) are repeated in every `run` command, so
    that the printed commands run the study that was planned."""
    from ...evaluate.harness import plan as harness_plan

    p = cfg.plan or local_machine(cfg)
    n_prompts = p.prompts or cfg.prompts.limit
    if n_prompts is None:
        raise ValueError("plan: set plan.prompts or prompts.limit (the prompt count is not read in a dry run)")
    per_answer = p.prompt_tokens + p.response_tokens
    flops_per_gpu_hour = p.peak_tflops * 1e12 * 3600
    conditions = cfg.all_conditions()
    needed = cfg.needed_tiers()
    sizes = {t.name: t.size or local_size(t) for t in needed}
    student = cfg.student.size or local_size(cfg.student)

    rows = []
    for t in needed:
        tokens = n_prompts * per_answer
        flops = 2.0 * sizes[t.name] * tokens if sizes[t.name] else None
        rows.append({"stage": "generate", "what": t.name, "params": sizes[t.name], "pairs": None, "tokens": tokens, "flops": flops,
                     "gpu_hours": flops / (flops_per_gpu_hour * p.generate_mfu) if flops else None})
    for c in conditions:
        stage = cfg.stage_for(c)
        seqs = 1 if c.method == "sft" else 2  # chosen and rejected
        tokens = n_prompts * per_answer * seqs * stage.epochs
        # policy forward+backward (no weight gradients under LoRA); a reference forward where the method has one
        mult = (4.0 if stage.options.get("lora") else 6.0) + (2.0 if METHODS[c.method].reference else 0.0)
        flops = mult * student * tokens if student else None
        rows.append({"stage": "train", "what": c.name, "params": student, "pairs": n_prompts, "tokens": tokens, "flops": flops,
                     "gpu_hours": flops / (flops_per_gpu_hour * p.train_mfu) if flops else None})
    if cfg.audit is not None:
        from ...audit.judges import RUBRIC

        judged = [c for c in conditions if c.rejected is not None]
        n = min(cfg.audit.n or n_prompts, n_prompts)
        # two answers per pair; a rubric judge reads its template around each (a pairwise one, both orders)
        tokens = len(judged) * n * 2 * (len(RUBRIC) // 4 + p.prompt_tokens + p.response_tokens)
        where = f"endpoint {cfg.audit.endpoint}" if cfg.audit.endpoint else "local"
        rows.append({"stage": "audit", "what": f"{cfg.audit.judge} ({cfg.audit.judge_model or 'student'}, {where})",
                     "params": None, "pairs": n * len(judged), "tokens": tokens, "flops": None, "gpu_hours": None})
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]

    out = cfg.out_dir
    accel = (["accelerate", "launch", "--config_file", p.accelerate_config, "--num_processes", str(p.gpus), "-m", "deltalearn.cli"]
             if p.gpus > 1 else ["deltalearn"])
    sets = [a for o in overrides or [] for a in ("--set", o)]
    commands = [["deltalearn", "run", recipe_path, *sets, "--stage", "data"]]
    commands += [[*accel, "run", recipe_path, *sets, "--stage", "train", "--condition", c.name] for c in conditions]
    commands += [["deltalearn", "run", recipe_path, *sets, "--stage", "eval"]]
    for name in ["base", *(c.run_name for c in conditions)] if p.harness else []:
        model = cfg.student.model if name == "base" else f"{out}/models/{name}/final"
        commands += harness_plan(model, p.harness, f"{out}/harness/{name}", gpus=p.gpus)
    commands += [["deltalearn", "report", out]]
    return {"settings": p.model_dump(), "prompts": n_prompts, "rows": rows, "total_gpu_hours": sum(known) if known else None,
            "commands": [shlex.join(c) for c in commands]}


def view(cfg, recipe: str, overrides: list[str] | None = None) -> list:
    """`deltalearn run R --dry-run`: each stage's tokens, FLOPs and device-hours, then the commands in order."""
    from rich.table import Table

    from ...errors import DeltaError
    from .. import Command

    try:
        p = plan_study(cfg, recipe, overrides)
    except ValueError as e:
        raise DeltaError(f"{recipe}: {e}") from None
    st = p["settings"]
    peak = f"{st['peak_tflops']:.0f} TFLOP/s" if st["peak_tflops"] >= 1 else f"{st['peak_tflops'] * 1000:.0f} GFLOP/s measured"
    t = Table(title=f"{cfg.name}: plan for {p['prompts']:,} prompts on {st['gpus']} x {st['gpu']} "
                    f"({peak} peak each; MFU assumed {st['generate_mfu']:.0%} generating, {st['train_mfu']:.0%} training)")
    for c in ("stage", "what", "parameters", "pairs", "tokens", "FLOPs", "device-hours"):
        t.add_column(c, justify="left" if c in ("stage", "what") else "right")
    for r in p["rows"]:
        t.add_row(r["stage"], r["what"], f"{r['params'] / 1e9:.2f}B" if r["params"] else "-" if r["stage"] == "audit" else "? (declare size)",
                  f"{r['pairs']:,}" if r["pairs"] else "-", f"{r['tokens']:,}",
                  f"{r['flops']:.2e}" if r["flops"] else "-" if r["stage"] == "audit" else "?",
                  f"{r['gpu_hours']:.2f}" if r["gpu_hours"] is not None else "-" if r["stage"] == "audit" else "?")
    total = p["total_gpu_hours"]
    return [t, f"total: {total:.2f} device-hours = {total / st['gpus']:.2f} h wall on {st['gpus']} x {st['gpu']} (tokens: "
               f"{st['prompt_tokens']} per prompt + {st['response_tokens']} per answer, assumed)" if total is not None
               else "total: unknown (declare `size` for every tier and the student)",
            "\ncommands, in order:", *(Command(f"  {c}") for c in p["commands"])]
