"""transformers backend: batched greedy (or sampled) generation with left padding and a KV cache."""

from __future__ import annotations

import torch

from ..chat import render_prompt
from ..models.loading import LoadedModel
from .base import Completion, GenerationSettings


class HFBackend:
    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.model_id = loaded.spec.model
        self.size = loaded.size
        self.fingerprint = loaded.fingerprint
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {e for e in eos + [self.tokenizer.eos_token_id] if e is not None}

    def prompt_length(self, conversation: list[dict]) -> int:
        return len(self.tokenizer(render_prompt(self.tokenizer, conversation), add_special_tokens=False)["input_ids"])

    @torch.no_grad()
    def generate(self, conversations: list[list[dict]], settings: GenerationSettings) -> list[Completion]:
        tok = self.tokenizer
        texts = [render_prompt(tok, c) for c in conversations]
        tok.padding_side = "left"  # new tokens must line up at the right edge of every row
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sampling = settings.temperature > 0
        if sampling:
            torch.manual_seed(settings.seed)
        out = self.model.generate(
            **enc,
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_p=settings.top_p if sampling else None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            use_cache=True,  # a config saved by a training run may say False; without the KV cache decoding is ~7x slower
        )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        results = []
        for text, ids in zip(texts, new):
            stop = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
            body = ids if stop is None else ids[:stop]
            results.append(
                Completion(
                    text=tok.decode(body, skip_special_tokens=True).strip(),
                    n_tokens=len(ids) if stop is None else stop + 1,
                    finish_reason="length" if stop is None else "stop",
                    rendered_prompt=text,
                    token_ids=ids if stop is None else ids[: stop + 1],
                )
            )
        return results

    def close(self) -> None:
        pass
