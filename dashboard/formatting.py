"""Display strings for the dashboard: money, counts, rates, deltas, key hints, ledger values.

Money arrives as exact ``Decimal`` and leaves as text without passing through ``float``:
``format_money`` is the compact form for metrics and tables (``$1,234.56``, and enough
significant digits that a small sum never shows as zero: ``$0.000148``); ``format_money_exact``
keeps every stored digit (``$0.00014825``) for tooltips and the exact-total caption.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from spendlog.export import display_money
from spendlog.export import format_money as _export_money

__all__ = [
    "format_money",
    "format_money_exact",
    "exact_decimal",
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


def exact_decimal(value: Decimal) -> str:
    """The exact value as plain text: no exponent, no trailing zeros past the point. The export's
    own money form, so an exact figure on screen matches the downloaded file digit for digit."""
    return _export_money(value)


def format_money(value: Decimal | None) -> str:
    """``$1,234.56``, ``$0.50``; under $0.10, up to three significant digits: ``$0.0123``,
    ``$0.000148``. The rule ``spendlog summary`` uses too (``spendlog.export.display_money``)."""
    return "–" if value is None else display_money(value)


def format_money_exact(value: Decimal | None) -> str:
    """Every stored digit, at least two decimals: ``$1,234.50``, ``$0.00014825``."""
    if value is None:
        return "–"
    sign = "-" if value < 0 else ""
    text = exact_decimal(abs(value))
    whole, _, frac = text.partition(".")
    frac = frac.ljust(2, "0")
    return f"{sign}${int(whole):,}.{frac}"


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
