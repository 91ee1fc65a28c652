"""Training recipes: one config dataclass for every method, plus the `paper` and `cpu` presets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models.spec import EMBEDDED, TierSpec
from ..config import BOOKKEEPING, bookkeeping_keys
from .methods import MethodName


# The keys marked BOOKKEEPING change how a run is logged, saved or run, not what it computes: left out
# of the inputs a finished run is reused by (train/loop.py) and of a study's (studies/common.py).
# torch_compile, lean_mlp and micro_batch_size only change how fast the same step runs (a step's
# gradient is the same sum over its global batch however it is cut, floating-point order aside).
# `data` and `model` are paths: the record holds their contents' fingerprints instead.
_B = BOOKKEEPING


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(default=16, gt=0, description="LoRA rank of each adapter.")
    alpha: int = Field(default=32, gt=0, description="LoRA alpha: the adapter's update is scaled by alpha / r.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapters' input, in [0, 1).")
    target_modules: str | list[str] = Field(
        default="all-linear", description="Modules that get adapters: `all-linear` or a list of module names (as peft takes).")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["train"] = Field(default="train", description="Recipe kind: train (one training run on a pairs file).")
    preset: Literal["paper", "cpu"] | None = Field(
        default=None, description="Defaults under the recipe's own keys: paper (released configs) or cpu (embedded model, CPU).")
    name: str = Field(default="train", description="Run name, a label (the wandb run's name).", json_schema_extra=_B)
    out_dir: str = Field(default="runs/train", description="Directory for checkpoints, final weights, metrics and the run record.", json_schema_extra=_B)
    model: TierSpec = Field(default_factory=lambda: TierSpec(name="policy", model=EMBEDDED),
                            description="The starting model: the policy, and the frozen reference of methods that have one.", json_schema_extra=_B)
    data: str = Field(description="The pairs to train on: a pairs JSONL or a saved dataset directory.", json_schema_extra=_B)
    data_split: str | None = Field(default=None, description="Keep only rows whose `split` column equals this; null = every row.")

    method: MethodName = Field(default="dpo_norm", description="Loss: dpo_norm (the paper's), dpo, ipo, simpo or sft.")
    beta: float = Field(default=5.0, gt=0, description="beta of the preference losses (dpo_norm, dpo, ipo, simpo); unused by sft.")
    gamma: float = Field(default=0.5, description="SimPO's target reward margin; simpo only.")
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5, description="cDPO label smoothing, in [0, 0.5); dpo only.")
    nll_coef: float = Field(
        default=0.0, ge=0, description="Weight of an extra NLL term on the chosen answer; 0 = off (as in every released config).")

    lr: float = Field(default=5e-8, gt=0, description="Peak learning rate (AdamW).")
    epochs: int = Field(default=1, ge=1, description="Passes over the pairs.")
    max_steps: int | None = Field(default=None, gt=0, description="Stop after this many optimizer steps if the epochs give more; null = no cap.")
    global_batch_size: int = Field(
        default=32, ge=1, description="Pairs per optimizer step, over all processes; a multiple of micro_batch_size.")
    micro_batch_size: int = Field(
        default=1, ge=1, description="Pairs per forward pass, per process: speed and memory only, not the result.", json_schema_extra=_B)
    max_length: int = Field(default=2048, gt=8, description="Most tokens of prompt plus answer; a longer pair follows `truncation`.")
    truncation: Literal["truncate", "drop"] = Field(
        default="truncate", description="Pairs over max_length: truncate (cut the answers to fit) or drop (leave the pair out).")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Share of the steps spent in linear learning-rate warm-up, in [0, 1).")
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="The cosine schedule ends at this fraction of lr, in [0, 1].")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW (beta1, beta2).")
    adam_eps: float = Field(default=1e-8, description="AdamW epsilon.")
    max_grad_norm: float | None = Field(default=1.0, description="Clip the gradients' global norm to this; null or 0 = no clipping.")
    seed: int = Field(default=42, description="Random seed: the pairs' order in each epoch, dropout and the like.")

    dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="Compute precision: float32, or bfloat16 (bf16 autocast over float32 weights).")
    # How the step is spread over processes (train/engines.py): `none` = one process or DDP through
    # accelerate; `deepspeed` = ZeRO `zero_stage` (1, 2 or 3); `fsdp2` = torch fully_shard. An accelerate
    # launch config that asks for DeepSpeed or FSDP selects the same engines.
    sharding: Literal["none", "deepspeed", "fsdp2"] = Field(
        default="none", description="none (one process or DDP), deepspeed (ZeRO `zero_stage`) or fsdp2 (torch fully_shard).")
    zero_stage: int = Field(default=2, ge=1, le=3, description="DeepSpeed ZeRO stage, 1, 2 or 3, when sharding is deepspeed.")
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations during backward: less memory, slower steps.")
    lora: LoraSettings | None = Field(default=None, description="Train a LoRA adapter with these settings; null = train every weight.")
    logprob_chunk: int = Field(
        default=1024, gt=0, description="Most response positions per chunk when the LM head computes log-probs.")
    # Memory (MB) for keeping the LM head's softmax from forward to backward instead of recomputing
    # it chunk by chunk; 0 = recompute (never holds [response tokens, vocab] at once).
    head_keep_mb: int = Field(
        default=0, ge=0, description="MB for keeping the LM head's softmax from forward to backward; 0 = recompute it.")
    # Compile each decoder layer (torch.compile, dynamic shapes) for training: fuses the element-wise
    # work between matmuls. Costs a compile before the first step (cached on disk for later runs);
    # on the CPU it needs a C++ compiler and runs eager, with a warning, without one.
    torch_compile: bool = Field(default=False, description="Compile each decoder layer with torch.compile (costs a compile first).", json_schema_extra=_B)
    # Pack a micro-batch's rows into one row with attention per row (scoring/packing.py), so no matmul
    # runs on padding. Needs a model with plain causal sdpa attention; others train padded, with a warning.
    padding_free: bool = Field(
        default=False, description="Pack a micro-batch's rows into one row, attention per row: no compute on padding.")
    # Gated SiLU MLPs (Llama-style) as one autograd function that keeps x, gate(x) and up(x) for backward
    # and recomputes the rest (train/lean_mlp.py): a quarter less activation memory. float32, no
    # DeepSpeed/FSDP, not with torch_compile (Inductor picks what to keep itself).
    lean_mlp: bool = Field(
        default=False, description="Gated MLPs keep only x, gate(x), up(x) for backward: less memory (float32, unsharded).", json_schema_extra=_B)

    save_every: int = Field(default=0, ge=0, description="Save a checkpoint every this many steps; 0 = only the final model.", json_schema_extra=_B)
    keep_checkpoints: int = Field(default=2, ge=1, description="Checkpoints kept on disk; older ones are deleted.", json_schema_extra=_B)
    log_every: int = Field(default=1, ge=1, description="Write metrics every this many steps (and at the last step).", json_schema_extra=_B)
    tracker: Literal["tensorboard", "wandb", "none"] = Field(
        default="tensorboard", description="Where metrics go besides metrics.jsonl: tensorboard, wandb or none.", json_schema_extra=_B)
    # What to do when out_dir holds a run made with other inputs: refuse (the default: nothing is
    # ever silently reused or resumed) or rerun (delete that run and train again).
    on_change: Literal["refuse", "rerun"] = Field(
        default="refuse", description="out_dir holds a run made with other inputs: refuse, or rerun (delete it, train again).", json_schema_extra=_B)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        return with_preset(data) if isinstance(data, dict) else data

    def problems(self) -> list[tuple[str, str]]:
        """Files this recipe names that are missing, found before anything loads."""
        from pathlib import Path

        from ..models.loading import source_problems

        out = [("model.model", m) for m in source_problems(self.model)]
        if not Path(self.data).exists():
            out.append(("data", f"pairs file not found: {self.data}"))
        return out

    @model_validator(mode="after")
    def _batch_divides(self) -> "TrainConfig":
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError("global_batch_size must be a multiple of micro_batch_size (times the number of processes)")
        return self


# Each preset states only what it changes from TrainConfig's defaults (which are the paper's own).
# The released configs of the paper (OpenRLHF fork) for Tulu-3-8B-SFT, Qwen 3B > 1.5B: lr 5e-8, batch
# 32, one epoch, 2048 tokens, beta 5 (the defaults), in bfloat16 with activation recomputation.
PAPER = {"dtype": "bfloat16", "gradient_checkpointing": True}
# The embedded SmolLM2-135M on a 2-core CPU: float32 (bfloat16 is far slower on a CPU without bf16
# matmul units), short sequences, a learning rate large enough to move a 135M model in tens of steps
# (the prototype of the bold-section study used 2e-5 at batch 8).
CPU = {
    "lr": 2e-5, "global_batch_size": 8, "max_length": 384,
    # Two pairs per forward: the matmuls see ~680 rows instead of ~340 and run ~10% faster on a 2-core
    # CPU; four would be faster still but take the peak RSS to ~0.8x TRL's (BENCHMARKS.md).
    # lean_mlp pays for most of the second pair's activations.
    "micro_batch_size": 2, "lean_mlp": True,
    "logprob_chunk": 256,
    # Keep the head's softmax for backward (a micro-batch's response positions x 49,152 vocab fit in
    # 256 MB up to ~1,300 tokens): skips recomputing the head's logits (BENCHMARKS.md).
    "head_keep_mb": 256,
    # Rows packed without padding: 4% faster per step on the 64-pair benchmark (BENCHMARKS.md).
    "padding_free": True,
    # torch_compile stays off: in the full loop it made steps ~3% faster on a 2-core CPU, less than the
    # 6-45 s it takes to compile for runs of the demo's size (BENCHMARKS.md).
}
PRESETS = {"paper": PAPER, "cpu": CPU}
BOOKKEEPING_KEYS = bookkeeping_keys(TrainConfig)


def with_preset(data: dict) -> dict:
    """Preset values first, the recipe's own keys on top."""
    preset = data.get("preset")
    return {**PRESETS[preset], **data} if preset in PRESETS else data


def preset_value(preset: str, key: str):
    """What a train recipe with only `preset` set gets for `key`: the preset's value or the default."""
    return PRESETS[preset].get(key, TrainConfig.model_fields[key].default)
