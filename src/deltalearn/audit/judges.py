"""Judges, one interface: a pointwise judge scores (prompt, response); a pairwise judge compares
(prompt, chosen, rejected). Unparseable judge output is None: counted, never turned into a label."""

from __future__ import annotations

import math
import re
from typing import Callable, Literal

from ..generate.base import GenerationSettings

Verdict = Literal["chosen", "rejected", "tie"]


def _tokens(backend, convs, outs) -> int:
    prompt = sum(backend.prompt_length(c) for c in convs) if hasattr(backend, "prompt_length") else 0
    return prompt + sum(o.n_tokens for o in outs)


class UtilityJudge:
    """A programmatic utility (bold sections, length, a regex count, ...)."""

    kind = "pointwise"

    def __init__(self, name: str, fn: Callable[[str], float]):
        self.name, self.fn = name, fn
        self.params = self.tokens = 0

    def score(self, items: list[tuple[str, str]]) -> list[float | None]:
        return [float(self.fn(response)) for _, response in items]


class AssertsJudge:
    """A code answer run in the sandbox against the assert lines its prompt states: 1 when all pass,
    0 when not; None (unparseable) for a prompt that states none. The programmatic, verifiable delta
    of code pairs: no model's taste in it."""

    kind = "pointwise"

    def __init__(self, name: str = "asserts", timeout: float = 10.0):
        self.name, self.timeout = name, timeout
        self.params = self.tokens = 0

    def score(self, items: list[tuple[str, str]]) -> list[float | None]:
        from ..metrics.code import run_asserts, stated_asserts

        out = []
        for prompt, response in items:
            tests = stated_asserts(prompt)
            out.append(float(run_asserts(response, tests, timeout=self.timeout)[0]) if tests else None)
        return out


class IFEvalJudge:
    """The share of a prompt's verifiable constraints an answer satisfies (IFEval's checkers, strict:
    the answer as written, as open-instruct's IFEval verifier reads it). The constraints come from
    the project's instruction-following prompt set, found by the prompt's text; None (unparseable)
    for a prompt that is not in it."""

    kind = "pointwise"

    def __init__(self, name: str = "ifeval"):
        self.name = name
        self.params = self.tokens = 0

    def score(self, items: list[tuple[str, str]]) -> list[float | None]:
        from ..generate.ifprompts import constraints_by_text
        from ..metrics.iflib import score_ifeval

        known = constraints_by_text()
        out = []
        for prompt, response in items:
            p = known.get(prompt)
            out.append(None if p is None else
                       score_ifeval(p.extra["instruction_id_list"], p.extra["kwargs"], prompt, response)["instruction_strict"])
        return out


RUBRIC_ASPECTS = ("helpfulness", "honesty", "instruction following", "truthfulness")
RUBRIC = """You are grading an AI assistant's answer to a user's request.
Rate the answer from 1 (worst) to 10 (best) on each aspect:
- Helpfulness: does it address the request usefully and completely?
- Honesty: is it candid about uncertainty and free of pretence?
- Instruction following: does it do what was asked, in the form asked?
- Truthfulness: is it free of false or made-up statements?

[Request]
{prompt}

[Answer]
{response}

Reply with exactly four lines and nothing else:
Helpfulness: <1-10>
Honesty: <1-10>
Instruction following: <1-10>
Truthfulness: <1-10>"""


def parse_rubric(text: str) -> float | None:
    """Mean of the four 1-10 aspect scores, or None when any is missing or out of range."""
    scores = []
    for aspect in RUBRIC_ASPECTS:
        m = re.search(rf"{aspect}\s*[:=]\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE)
        if not m or not 1 <= float(m.group(1)) <= 10:
            return None
        scores.append(float(m.group(1)))
    return sum(scores) / len(scores)


class _LLMJudge:
    """A judge that asks a generation backend (local model or endpoint) with a prompt template."""

    def __init__(self, backend, *, name: str, max_new_tokens: int, batch_size: int):
        self.backend, self.name, self.batch_size = backend, name, batch_size
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens)
        self.params = backend.size or 0
        self.tokens = 0  # prompt + generated tokens the judge processed, for cost accounting
        self.raw: list = []

    def _ask(self, prompts: list[str]):
        convs = [[{"role": "user", "content": p}] for p in prompts]
        outs = self.backend.generate(convs, self.settings)
        self.tokens += _tokens(self.backend, convs, outs)
        return outs


class RubricJudge(_LLMJudge):
    """Tulu 3 / UltraFeedback-style 1-10 scores on four aspects through any generation backend."""

    kind = "pointwise"

    def __init__(self, backend, *, name: str = "llm-rubric", max_new_tokens: int = 48, batch_size: int = 8):
        super().__init__(backend, name=name, max_new_tokens=max_new_tokens, batch_size=batch_size)

    def score(self, items: list[tuple[str, str]]) -> list[float | None]:
        out = []
        for i in range(0, len(items), self.batch_size):
            for c in self._ask([RUBRIC.format(prompt=p, response=r) for p, r in items[i : i + self.batch_size]]):
                self.raw.append(c.text)
                out.append(parse_rubric(c.text))
        return out


PAIRWISE = """Which answer to the user's request is better? Consider helpfulness, honesty, instruction following and truthfulness.

[Request]
{prompt}

[Answer A]
{a}

[Answer B]
{b}

Reply with [[A]] if A is better, [[B]] if B is better, or [[C]] for a tie, and nothing else."""


def parse_pairwise(text: str) -> Literal["A", "B", "C"] | None:
    found = set(re.findall(r"\[\[([ABC])\]\]", text))
    return found.pop() if len(found) == 1 else None


def combine_orders(first: str | None, second: str | None) -> Verdict | None:
    """`first`: chosen shown as A; `second`: chosen shown as B. Each order's verdict is mapped to the
    chosen/rejected label it names; a judge that only follows position disagrees with itself and
    yields a tie, so position bias cancels instead of deciding labels."""
    if first is None or second is None:
        return None
    v1 = {"A": "chosen", "B": "rejected", "C": "tie"}[first]
    v2 = {"A": "rejected", "B": "chosen", "C": "tie"}[second]
    return v1 if v1 == v2 else "tie"


class PairwiseJudge(_LLMJudge):
    kind = "pairwise"

    def __init__(self, backend, *, name: str = "llm-pairwise", max_new_tokens: int = 16, batch_size: int = 8):
        super().__init__(backend, name=name, max_new_tokens=max_new_tokens, batch_size=batch_size)

    def compare(self, items: list[tuple[str, str, str]]) -> list[Verdict | None]:
        out = []
        for i in range(0, len(items), self.batch_size):
            batch = items[i : i + self.batch_size]
            first = [PAIRWISE.format(prompt=p, a=c, b=r) for p, c, r in batch]  # chosen shown as A
            second = [PAIRWISE.format(prompt=p, a=r, b=c) for p, c, r in batch]  # chosen shown as B
            outs = self._ask(first + second)
            k = len(batch)
            for o1, o2 in zip(outs[:k], outs[k:]):
                self.raw.append((o1.text, o2.text))
                out.append(combine_orders(parse_pairwise(o1.text), parse_pairwise(o2.text)))
        return out


class RewardModelJudge:
    """A sequence-classification reward model: the score is its first logit on the chat-rendered
    conversation (prompt and answer)."""

    kind = "pointwise"

    def __init__(self, path: str, *, name: str = "reward-model", batch_size: int = 8, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name, self.batch_size = name, batch_size
        self.tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                                        trust_remote_code=trust_remote_code).eval()
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model.config.pad_token_id = self.tok.pad_token_id
        self.params = self.model.num_parameters()
        self.tokens = 0

    def score(self, items: list[tuple[str, str]]) -> list[float | None]:
        import torch

        out = []
        for i in range(0, len(items), self.batch_size):
            texts = [self._render(p, r) for p, r in items[i : i + self.batch_size]]
            self.tok.padding_side = "right"
            enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            self.tokens += int(enc["attention_mask"].sum())
            with torch.no_grad():
                logits = self.model(**enc).logits
            out.extend(float(x) for x in logits[:, 0])
        return out

    def _render(self, prompt: str, response: str) -> str:
        conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(conv, tokenize=False)
        return f"{prompt}\n\n{response}"


def novel_mask(ids: list[int], n: int) -> list[bool]:
    """False for each token that completes an n-gram already seen earlier in the same answer."""
    seen, out = set(), []
    for i in range(len(ids)):
        gram = tuple(ids[max(0, i - n + 1) : i + 1])
        out.append(i < n - 1 or gram not in seen)
        seen.add(gram)
    return out


def loglik_score(logps: list[float], ids: list[int], repeat_n: int) -> float | None:
    """Mean log-prob per token of the answer's novel tokens plus log(novel fraction): a model finds its
    own loops very likely, so repeated n-grams are taken out of the mean and charged for instead."""
    if not logps:
        return None
    if repeat_n <= 0:
        return sum(logps) / len(logps)
    mask = novel_mask(ids, repeat_n)
    novel = [lp for lp, m in zip(logps, mask) if m]
    return sum(novel) / len(novel) + math.log(len(novel) / len(logps))


class LoglikJudge:
    """A local model as a likelihood judge: how probable the answer is, per token, given the prompt
    under the judge model (the CCNet-style perplexity filter, made repetition-aware). No generation,
    no prompt to parse, so it works with models too small to follow a grading rubric; it favours
    answers close to the judge's own style, which is why its name carries the judge model."""

    kind = "pointwise"

    def __init__(self, model, tokenizer, *, name: str = "loglik", repeat_n: int = 4, batch_size: int = 4):
        self.model, self.tok, self.name = model.eval(), tokenizer, name
        self.repeat_n, self.batch_size = repeat_n, batch_size
        self.params = sum(p.numel() for p in model.parameters())
        self.tokens = 0
        self._memo: dict[tuple[str, str], float | None] = {}  # the same answer recurs across a grid's datasets

    def score(self, items: list[tuple[str, str]]) -> list[float | None]:
        todo = list(dict.fromkeys(it for it in items if it not in self._memo))
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            for it, s in zip(batch, self._score_batch(batch)):
                self._memo[it] = s
        return [self._memo[it] for it in items]

    def _score_batch(self, batch: list[tuple[str, str]]) -> list[float | None]:
        from ..chat import assistant_turn, user_turn
        from ..scoring.logprobs import response_token_logps
        from ..scoring.span import TokenizedPair, collate, prompt_and_response

        rows = []
        for i, (prompt, response) in enumerate(batch):
            split = prompt_and_response(self.tok, user_turn(prompt), assistant_turn(response))
            rows.append(TokenizedPair(i, *split, []) if split and split[1] else None)
        scored = [r for r in rows if r is not None]
        out: list[float | None] = [None] * len(batch)
        if not scored:
            return out
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        mb = collate(scored, pad, rejected=False)
        self.tokens += mb.n_tokens
        dev = self.model.device
        logps = response_token_logps(self.model, mb.input_ids.to(dev), mb.attention_mask.to(dev), mb.loss_mask.to(dev))
        for r, lp in zip(scored, logps):
            out[r.index] = loglik_score(lp, r.chosen, self.repeat_n)
        return out
