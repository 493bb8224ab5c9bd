"""Money as text: the one place that turns an exact ``Decimal`` amount into characters.

Two forms, never mixed up:

- ``money_exact``: for files (CSV, JSON lines, FOCUS, the reconcile report) and anything compared
  digit by digit with them: every stored digit, plain notation (never an exponent), trailing zeros
  dropped, no currency sign: ``Decimal('1.2500')`` -> ``'1.25'``.
- ``money_display``: for screens (the dashboard, ``spendlog summary``): ``$1,234.56``; under $0.10
  three significant digits, so a small sum never reads as zero (``$0.000148``). ``exact=True`` keeps
  every stored digit, at least two decimals (``$0.00014825``), for tooltips and the exact caption.

Amounts never pass through ``float``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

__all__ = ["NO_AMOUNT", "money_exact", "money_display"]

NO_AMOUNT = "–"  # what a screen shows for an unknown amount


def money_exact(amount: Decimal) -> str:
    """Exact, plain notation, no trailing zeros: ``Decimal('1.2500')`` -> ``'1.25'``, ``1E-12`` ->
    ``'0.000000000001'``, ``-0`` -> ``'0'``."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def money_display(amount: Decimal | None, *, exact: bool = False) -> str:
    """Money for people: ``$1,234.56``, ``-$2.50``, ``$0.000148`` (under $0.10, three significant
    digits); with ``exact`` every stored digit and at least two decimals (``$1,234.50``,
    ``$0.00014825``). ``None`` (unknown) is ``–``."""
    if amount is None:
        return NO_AMOUNT
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if exact:
        text = money_exact(amount)
    elif amount == 0:
        return "$0.00"
    else:
        text = _rounded(amount)
    whole, _, frac = text.partition(".")
    return f"{sign}${int(whole):,}.{frac.ljust(2, '0')}"


def _rounded(amount: Decimal) -> str:
    """A positive amount rounded for display: two places, or three significant digits under 0.1
    (trailing zeros dropped, two places kept: 0.0990 -> 0.099; 0.09999 -> 0.10)."""
    # adjusted() is the exponent of the first significant digit: 0.000148 -> -4
    places = 2 if amount >= Decimal("0.1") else max(2, -amount.adjusted() + 2)
    text = format(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), "f")
    if places > 2:
        text = text.rstrip("0")
    return text
