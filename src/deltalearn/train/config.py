"""Training recipes: one config dataclass for every method, plus the `paper` and `cpu` presets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models.spec import EMBEDDED, TierSpec
from .methods import MethodName


# Settings that change how a run is logged, saved or run, not what it computes: left out of the inputs
# a finished run is reused by (train/loop.py) and of a study's (experiments/common.py), so they never
# block a reuse or a resume. torch_compile, lean_mlp and micro_batch_size only change how fast the same
# step runs (a step's gradient is the same sum over its global batch however it is cut, floating-point
# order aside). `data` and `model` are paths: the record holds their contents' fingerprints instead.
BOOKKEEPING = frozenset({"name", "out_dir", "tracker", "save_every", "keep_checkpoints", "log_every", "torch_compile",
                         "lean_mlp", "micro_batch_size", "on_change", "data", "model"})


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["train"] = "train"
    preset: Literal["paper", "cpu"] | None = None
    name: str = "train"
    out_dir: str = "runs/train"
    model: TierSpec = Field(default_factory=lambda: TierSpec(name="policy", model=EMBEDDED))
    data: str  # pairs JSONL or saved dataset directory
    data_split: str | None = None  # keep rows whose `split` column equals this

    method: MethodName = "dpo_norm"
    beta: float = Field(default=5.0, gt=0)
    gamma: float = 0.5  # simpo margin
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)  # dpo only
    nll_coef: float = Field(default=0.0, ge=0)  # optional NLL on chosen; 0 in every released config

    lr: float = Field(default=5e-8, gt=0)
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, gt=0)
    global_batch_size: int = Field(default=32, ge=1)
    micro_batch_size: int = Field(default=1, ge=1)  # pairs per forward, per process
    max_length: int = Field(default=2048, gt=8)
    truncation: Literal["truncate", "drop"] = "truncate"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    seed: int = 42

    dtype: Literal["float32", "bfloat16"] = "float32"
    # How the step is spread over processes (train/engines.py): `none` = one process or DDP through
    # accelerate; `deepspeed` = ZeRO `zero_stage` (1, 2 or 3); `fsdp2` = torch fully_shard. An accelerate
    # launch config that asks for DeepSpeed or FSDP selects the same engines.
    sharding: Literal["none", "deepspeed", "fsdp2"] = "none"
    zero_stage: int = Field(default=2, ge=1, le=3)
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    logprob_chunk: int = Field(default=1024, gt=0)
    # Memory (MB) for keeping the LM head's softmax from forward to backward instead of recomputing
    # it chunk by chunk; 0 = recompute (never holds [response tokens, vocab] at once).
    head_keep_mb: int = Field(default=0, ge=0)
    # Compile each decoder layer (torch.compile, dynamic shapes) for training: fuses the element-wise
    # work between matmuls. Costs a compile before the first step (cached on disk for later runs);
    # on the CPU it needs a C++ compiler and runs eager, with a warning, without one.
    torch_compile: bool = False
    # Pack a micro-batch's rows into one row with attention per row (scoring/packing.py), so no matmul
    # runs on padding. Needs a model with plain causal sdpa attention; others train padded, with a warning.
    padding_free: bool = False
    # Gated SiLU MLPs (Llama-style) as one autograd function that keeps x, gate(x) and up(x) for backward
    # and recomputes the rest (train/lean_mlp.py): a quarter less activation memory. float32, no
    # DeepSpeed/FSDP, not with torch_compile (Inductor picks what to keep itself).
    lean_mlp: bool = False

    save_every: int = Field(default=0, ge=0)  # steps; 0 = only the final model
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=1, ge=1)
    tracker: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    # What to do when out_dir holds a run made with other inputs: refuse (the default: nothing is
    # ever silently reused or resumed) or rerun (delete that run and train again).
    on_change: Literal["refuse", "rerun"] = "refuse"

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


# The released configs of the paper (OpenRLHF fork) for Tulu-3-8B-SFT, Qwen 3B > 1.5B.
PAPER = {
    "method": "dpo_norm", "beta": 5.0, "lr": 5e-8, "global_batch_size": 32, "micro_batch_size": 1, "epochs": 1,
    "warmup_ratio": 0.03, "min_lr_ratio": 0.1, "weight_decay": 0.0, "adam_betas": [0.9, 0.95],
    "max_grad_norm": 1.0, "seed": 42, "max_length": 2048, "dtype": "bfloat16", "gradient_checkpointing": True,
}
# The embedded SmolLM2-135M on a 2-core CPU: float32 (bfloat16 is far slower on a CPU without bf16 matmul units), short
# sequences, a learning rate large enough to move a 135M model in tens of steps (the prototype of
# the bold-section study used 2e-5 at batch 8).
CPU = {
    "method": "dpo_norm", "beta": 5.0, "lr": 2e-5, "global_batch_size": 8, "micro_batch_size": 2, "epochs": 1,
    "warmup_ratio": 0.03, "min_lr_ratio": 0.1, "weight_decay": 0.0, "adam_betas": [0.9, 0.95],
    "max_grad_norm": 1.0, "seed": 42, "max_length": 384, "dtype": "float32", "gradient_checkpointing": False,
    # Two pairs per forward: the matmuls see ~680 rows instead of ~340 and run ~10% faster on this
    # CPU; four would be faster still but take the peak RSS to ~0.8x TRL's (BENCHMARKS.md).
    # lean_mlp pays for most of the second pair's activations.
    "lean_mlp": True,
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


def with_preset(data: dict) -> dict:
    """Preset values first, the recipe's own keys on top."""
    preset = data.get("preset")
    return {**PRESETS[preset], **data} if preset in PRESETS else data
