"""The one markdown table writer of every benchmark report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str) -> list[str]:
    """A markdown table as lines: one cell per column in each row, align one letter per column ('l' or 'r')."""
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns but align {align!r}")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [f"| {' | '.join(header)} |", f"| {' | '.join(rule)} |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns: {row!r}")
        lines.append(f"| {' | '.join(str(c) for c in row)} |")
    return lines
