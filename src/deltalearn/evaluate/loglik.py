"""Multiple choice by log-likelihood: each option as the assistant's answer to the question, scored
by its summed (acc) and per-token (acc_norm) log-probability under the model; no generation.
p_correct / p_correct_norm: the probability the model puts on the correct option among the options
(softmax of those two scores), a continuous score that sees small moves accuracy cannot."""

from __future__ import annotations

import torch

from ..chat import chat_ids
from ..scoring.span import TokenizedPair, collate, prompt_and_response
from ..scoring.logprobs import response_logps


@torch.no_grad()
def option_logps(model, tokenizer, question: str, options: list[str]) -> tuple[list[float], list[float]]:
    conv = [{"role": "user", "content": question}]
    rows = []
    for i, opt in enumerate(options):
        split = prompt_and_response(tokenizer, conv, [{"role": "assistant", "content": opt}])
        if split is None:  # a template that re-renders the prompt: split where the two renderings part
            prompt, full = chat_ids(tokenizer, conv, add_generation_prompt=True), chat_ids(tokenizer, conv + [{"role": "assistant", "content": opt}])
            n = next((k for k, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
            split = (full[:n], full[n:])
        rows.append(TokenizedPair(i, split[0], split[1], []))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    mb = collate(rows, pad, rejected=False)
    dev = model.device
    sums, lens = response_logps(model, mb.input_ids.to(dev), mb.attention_mask.to(dev), mb.loss_mask.to(dev))
    return sums.tolist(), lens.tolist()


def option_probability(scores: list[float], answer: int) -> float:
    """The correct option's share of the probability over the options: softmax(scores)[answer].
    Unlike accuracy it moves when training shifts the likelihoods without flipping the argmax."""
    return torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)[answer].item()


def score_item(model, tokenizer, question: str, options: list[str], answer: int) -> dict:
    sums, lens = option_logps(model, tokenizer, question, options)
    norm = [s / max(n, 1.0) for s, n in zip(sums, lens)]
    best = max(range(len(options)), key=lambda i: sums[i])
    best_norm = max(range(len(options)), key=lambda i: norm[i])
    return {"acc": float(best == answer), "acc_norm": float(best_norm == answer),
            "p_correct": option_probability(sums, answer), "p_correct_norm": option_probability(norm, answer), "_choice": best}
