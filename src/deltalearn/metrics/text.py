"""Programmatic utilities: a number per response, no model needed."""

from __future__ import annotations

import re

BOLD_LINE = re.compile(r"^\s*(?:#{1,6}\s*)?\*\*[^*\n]+?\*\*:?\s*$")


def bold_sections(text: str) -> int:
    """Markdown bold section headers: lines that hold only a bold span (`**Title**` or `**Title:**`),
    optionally behind `#` heading marks. The bold-section study's utility."""
    return sum(1 for line in text.splitlines() if BOLD_LINE.match(line))


def distinct_bold_sections(text: str) -> int:
    """Bold header lines counted once per distinct title: a greedy small model can loop on one header
    line dozens of times, which would otherwise dominate a mean."""
    return len({line.strip().strip("#").strip().strip("*").rstrip(":").strip().lower()
                for line in text.splitlines() if BOLD_LINE.match(line)})


def length_chars(text: str) -> int:
    return len(text)


def length_words(text: str) -> int:
    return len(text.split())


def regex_count(pattern: str):
    rx = re.compile(pattern, re.MULTILINE)

    def count(text: str) -> int:
        return len(rx.findall(text))

    return count


UTILITIES = {"bold_sections": bold_sections, "distinct_bold_sections": distinct_bold_sections, "length_chars": length_chars, "length_words": length_words}


def word_ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def shared_ngrams(train: dict, held_out: dict, n: int = 13) -> dict:
    """Contamination check in the style of the GPT-3 paper's: each held-out id that shares a run of
    `n` words (case and punctuation ignored) with some training text, mapped to those training ids."""
    owners: dict[tuple[str, ...], set[str]] = {}
    for tid, text in train.items():
        for g in word_ngrams(text, n):
            owners.setdefault(g, set()).add(tid)
    hits = {}
    for hid, text in held_out.items():
        found = set().union(*(owners.get(g, set()) for g in word_ngrams(text, n)))
        if found:
            hits[hid] = sorted(found)
    return hits
