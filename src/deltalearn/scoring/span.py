"""A prompt and its response as token ids, the response's span found the way TRL finds it: the chat
template renders the prompt (with the generation prompt) as a prefix of prompt + response, and the
rest is the response, its end tokens included. Rows of a micro-batch are right-padded to the longest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..chat import chat_ids
from ..errors import DeltaError, where


@dataclass
class TokenizedPair:
    index: int  # row in the dataset (0-based)
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))

    @property
    def tokens(self) -> int:
        return 2 * len(self.prompt) + len(self.chosen) + len(self.rejected)


def prompt_and_response(tokenizer, prompt: list[dict], response: list[dict]) -> tuple[list[int], list[int]] | None:
    """(prompt ids with the generation prompt, response ids) of a conversation, or None when the chat
    template renders the prompt differently once a response follows it (no clean split exists)."""
    p = chat_ids(tokenizer, prompt, add_generation_prompt=True)
    full = chat_ids(tokenizer, prompt + response)
    return (p, full[len(p):]) if full[: len(p)] == p else None


def tokenize_pair(tokenizer, row: dict, *, index: int = 0, source: str = "pairs") -> TokenizedPair:
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    if isinstance(prompt, list):  # conversational, as TRL: template(prompt) is the prefix of template(prompt+answer)
        split = {}
        for name, answer in (("chosen", chosen), ("rejected", rejected)):
            split[name] = prompt_and_response(tokenizer, prompt, answer)
            if split[name] is None:
                raise DeltaError(
                    f"{where(source, index + 1, name)}: the chat template renders the prompt differently when a "
                    "response follows it, so the response tokens cannot be separated from the prompt"
                )
        return TokenizedPair(index, split["chosen"][0], split["chosen"][1], split["rejected"][1])
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    p = tokenizer(prompt)["input_ids"]
    c = tokenizer(prompt + chosen)["input_ids"][len(p) :] + eos
    r = tokenizer(prompt + rejected)["input_ids"][len(p) :] + eos
    return TokenizedPair(index, p, c, r)


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [2k, T]: k chosen rows then k rejected rows
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor  # 1 on response tokens
    index: torch.Tensor  # [k] dataset rows of the pairs
    n_tokens: int  # real (non-padding) tokens


def collate(pairs: list[TokenizedPair], pad_id: int, *, rejected: bool = True) -> MicroBatch:
    """k pairs -> 2k rows (chosen rows, then rejected rows); with rejected=False (SFT) the k chosen rows only."""
    rows = [tp.prompt + tp.chosen for tp in pairs] + ([tp.prompt + tp.rejected for tp in pairs] if rejected else [])
    resp = [len(tp.chosen) for tp in pairs] + ([len(tp.rejected) for tp in pairs] if rejected else [])
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    lm = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (r, n) in enumerate(zip(rows, resp)):
        ids[i, : len(r)] = torch.tensor(r)
        att[i, : len(r)] = 1
        lm[i, len(r) - n : len(r)] = 1
    return MicroBatch(ids, att, lm, torch.tensor([tp.index for tp in pairs]), int(att.sum()))
