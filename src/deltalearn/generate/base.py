"""The backend interface: a batch of conversations in, one completion per conversation out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    category: str | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


class GenerationSettings(BaseModel):
    """Decoding settings. Defaults follow the paper: greedy, no system prompt of ours."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(default=256, gt=0, description="Most tokens generated per answer.")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature; 0 = greedy decoding.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling's probability mass, in (0, 1]; 1 = off. Used when temperature > 0.")
    seed: int = Field(default=0, description="Sampling seed (used when temperature > 0).")

    def key(self) -> dict:
        return self.model_dump()


@dataclass
class Completion:
    text: str
    n_tokens: int  # generated tokens, EOS included when the model stopped by itself
    finish_reason: Literal["stop", "length"]
    rendered_prompt: str | None = None  # what the model was conditioned on, when the backend knows
    token_ids: list[int] | None = None  # the generated ids, EOS included, when the backend has them


class Backend(Protocol):
    """One model behind one interface. `model_id` and `size` go into provenance."""

    model_id: str
    size: int | None
    fingerprint: str

    def generate(self, conversations: list[list[dict]], settings: GenerationSettings) -> list[Completion]: ...

    def prompt_length(self, conversation: list[dict]) -> int:
        """A cheap length used to sort prompts so batches hold similar lengths."""
        ...

    def close(self) -> None: ...
