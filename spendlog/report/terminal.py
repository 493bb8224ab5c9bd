"""Text for the terminal: plain tables and values a terminal shows as they are."""

from __future__ import annotations

__all__ = ["text_table", "printable"]


def text_table(title: str, header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """A terminal table as lines: the title, the header, a rule, the rows (columns in ``right``
    aligned right)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [title, line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def printable(value: str | None) -> str:
    """A ledger value for the terminal: ``(none)`` for unknown, control characters as ``?``
    (header values arrive from callers: no terminal escapes)."""
    if value is None:
        return "(none)"
    return "".join(ch if ch.isprintable() else "?" for ch in value)
