"""The training methods' registry, free of torch so that the CLI's help and recipe validation read it cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    reference: bool  # needs the frozen reference's log-probs (one forward pass before training)
    pairs: bool = True  # False: trains on the chosen answers only


# The one list of training methods: recipes' validation, the CLI's help, the loop and the dry run read it.
METHODS = {m.name: m for m in (
    Method("dpo_norm", "length-normalised DPO, the paper's loss (TRL sigmoid_norm)", reference=True),
    Method("dpo", "DPO on summed log-probs (TRL sigmoid), label_smoothing as cDPO", reference=True),
    Method("ipo", "IPO, length-normalised as TRL", reference=True),
    Method("simpo", "SimPO, no reference model (TRL CPO simpo)", reference=False),
    Method("sft", "supervised fine-tuning on the chosen answers", reference=False, pairs=False),
)}
MethodName = Literal["dpo_norm", "dpo", "ipo", "simpo", "sft"]
assert set(MethodName.__args__) == set(METHODS), "MethodName must list METHODS"
