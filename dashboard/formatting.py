"""Display strings for the dashboard: counts, rates, deltas, key hints, ledger values.

Money is not formatted here: the dashboard shows it with the read room's
``spendlog.report.money.money_display`` (``$1,234.56``, ``$0.000148``; ``exact=True`` keeps every
stored digit, ``$0.00014825``, for tooltips and the exact-total caption), the same text as
``spendlog summary``.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "format_count",
    "format_percent",
    "format_delta",
    "safe_hint",
    "label",
    "UNKNOWN",
]

UNKNOWN = "(none)"
_HINT = re.compile(r"^[A-Za-z0-9]{1,8}_?\.\.\.[A-Za-z0-9]{4}$")
# Bidi controls (embeddings, overrides, isolates, marks): applied, they reorder the text around
# them ("evil\u202egnp.exe" reads "evilexe.png"); shown, they read as a marker: ⟨U+202E⟩.
_BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_SHOWN = {cp: f"⟨U+{cp:04X}⟩" for cp in _BIDI_CONTROLS}


def format_count(value: int | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def format_percent(numerator: int | Decimal, denominator: int | Decimal, places: int = 1) -> str:
    """``12.3%``; ``–`` when the denominator is zero."""
    if not denominator:
        return "–"
    pct = (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{format(pct, 'f')}%"


def format_delta(current: Decimal | int | None, previous: Decimal | int | None) -> str | None:
    """Relative change for ``st.metric``'s delta: ``+12.5%``, ``-3.0%``, ``new`` or None (no basis)."""
    if current is None or previous is None:
        return None
    current, previous = Decimal(current), Decimal(previous)
    if previous == 0:
        return None if current == 0 else "new"
    pct = ((current - previous) * 100 / previous).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{'+' if pct >= 0 else ''}{format(pct, 'f')}%"


def safe_hint(value: str | None) -> str:
    """A key hint as shown on screen: stored hints pass; anything longer is re-masked to its last 4."""
    if not value:
        return UNKNOWN
    if _HINT.match(value):
        return value
    prefix = value.split("_", 1)[0][:4] + "_" if "_" in value else ""
    return label(f"{prefix}...{value[-4:]}") if len(value) > 4 else "..."


def label(value: str | None) -> str:
    """A ledger value (model, app, user, key hint, error) for display: sidebar choices, tables, chart
    categories and tooltips. ``None`` and '' read as ``(none)``; bidi controls show as ``⟨U+202E⟩``
    instead of reordering what is around them. Filters keep selecting by the stored value."""
    return value.translate(_SHOWN) if value else UNKNOWN
