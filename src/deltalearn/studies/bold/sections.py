"""The bold-section study's data: an answer rewritten to hold exactly k bold section headers.

Procedure (deterministic, documented for the report):
1. Remove any line that is only a bold span, and `**` markers elsewhere, so the answer's own text
   is all that remains.
2. Split the text into sentences (into words when it has fewer sentences than k) and cut them into
   k contiguous groups of nearly equal size; `variant` 1 moves every cut one unit later where it can,
   so the same answer gets a second, different k-section version (the zero-delta control needs two
   different 3-section versions: identical pairs give exactly zero gradient).
3. Put a header line `**Title**` above each group. Variant 0 titles a group with its first three
   words; variant 1 with "Part i: " and its first two words.
The words of the answer and their order are unchanged; only headers and line breaks are added.
"""

from __future__ import annotations

import re

from ...metrics.text import BOLD_LINE, bold_sections


def strip_bold(text: str) -> str:
    lines = [l for l in text.splitlines() if not BOLD_LINE.match(l)]
    return re.sub(r"\*\*", "", "\n".join(lines)).strip()


def _units(text: str, k: int) -> tuple[list[str], str]:
    flat = " ".join(text.split())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", flat) if s]
    if len(sentences) >= k:
        return sentences, " "
    return flat.split(" "), " "


def _cuts(n: int, k: int, variant: int) -> list[int]:
    base = [round(i * n / k) for i in range(1, k)]
    if variant:
        moved = [c + 1 for c in base]
        if all(a < b for a, b in zip([0] + moved, moved + [n])):
            return moved
        moved = [c - 1 for c in base]
        if all(a < b for a, b in zip([0] + moved, moved + [n])):
            return moved
    return base


def _title(group: str, i: int, variant: int) -> str:
    words = re.findall(r"[A-Za-z0-9']+", group)
    if variant:
        return f"Part {i + 1}: " + " ".join(words[:2]).capitalize() if words else f"Part {i + 1}"
    return " ".join(w.capitalize() for w in words[:3]) or f"Section {i + 1}"


def with_k_sections(text: str, k: int, variant: int = 0) -> str:
    """`text` rewritten with exactly k bold section headers (k >= 1; needs at least k words)."""
    body = strip_bold(text)
    units, sep = _units(body, k)
    if len(units) < k:
        raise ValueError(f"an answer of {len(units)} words cannot hold {k} sections")
    cuts = [0] + _cuts(len(units), k, variant) + [len(units)]
    parts = []
    for i in range(k):
        group = sep.join(units[cuts[i] : cuts[i + 1]])
        parts.append(f"**{_title(group, i, variant)}**\n{group}")
    out = "\n\n".join(parts)
    assert bold_sections(out) == k
    return out
