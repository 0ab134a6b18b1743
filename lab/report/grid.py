"""A table for a terminal: rows by columns of short text, columns as wide as their widest cell."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def render_grid(corner: str, rows: Sequence[str], columns: Sequence[str], cell: Callable[[str, str], str],
                *, min_width: int = 5) -> list[str]:
    """Lines of a table: *corner* above the row names, a column per *columns*, ``cell(row, column)`` inside."""
    texts = {(r, c): cell(r, c) for r in rows for c in columns}
    width = max([len(corner), *map(len, rows)])
    widths = [max([len(c), min_width, *(len(texts[r, c]) for r in rows)]) for c in columns]
    lines = ["  ".join([corner.ljust(width), *(c.ljust(w) for c, w in zip(columns, widths))]).rstrip()]
    for row in rows:
        lines.append("  ".join([row.ljust(width), *(texts[row, c].ljust(w) for c, w in zip(columns, widths))]).rstrip())
    return lines
