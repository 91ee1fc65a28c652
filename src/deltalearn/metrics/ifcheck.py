"""Verifiable instruction checks in the style of IFEval: each is a pure function of the answer."""

from __future__ import annotations

import json
import re

from .text import bold_sections


def _words(t: str) -> list[str]:
    return re.findall(r"\b[\w'-]+\b", t)


def _sentences(t: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", t.strip()) if s.strip()]


def _bullets(t: str) -> int:
    return sum(1 for line in t.splitlines() if re.match(r"^\s*[-*•]\s+\S", line))


def _numbered(t: str) -> int:
    return sum(1 for line in t.splitlines() if re.match(r"^\s*\d+[.)]\s+\S", line))


def _json(t: str) -> bool:
    body = t.strip()
    m = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    try:
        json.loads(m.group(1) if m else body)
        return True
    except ValueError:
        return False


CHECKS = {
    "max_words": lambda t, n: len(_words(t)) <= n,
    "min_words": lambda t, n: len(_words(t)) >= n,
    "max_sentences": lambda t, n: len(_sentences(t)) <= n,
    "exact_bullets": lambda t, n: _bullets(t) == n,
    "min_numbered": lambda t, n: _numbered(t) >= n,
    "lowercase": lambda t: t == t.lower() and any(c.isalpha() for c in t),
    "uppercase": lambda t: t == t.upper() and any(c.isalpha() for c in t),
    "no_commas": lambda t: "," not in t,
    "contains": lambda t, word, times=1: len(re.findall(re.escape(word), t, re.IGNORECASE)) >= times,
    "excludes": lambda t, word: word.lower() not in t.lower(),
    "ends_with": lambda t, phrase: t.strip().rstrip(".!\"'").lower().endswith(phrase.lower().rstrip(".!")),
    "starts_with": lambda t, phrase: t.strip().lower().startswith(phrase.lower()),
    "json": lambda t: _json(t),
    "quoted": lambda t: len(t.strip()) > 1 and t.strip()[0] == t.strip()[-1] == '"',
    "min_bold_sections": lambda t, n: bold_sections(t) >= n,
    "one_word": lambda t: len(_words(t)) == 1,
}


def check(instruction: dict, text: str) -> bool:
    """instruction: {"check": name, **params}."""
    params = {k: v for k, v in instruction.items() if k != "check"}
    return bool(CHECKS[instruction["check"]](text, **params))
