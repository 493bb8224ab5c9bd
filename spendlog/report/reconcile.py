"""A reconciliation report (``spendlog.db.reconcile.Report``) as CSV or JSON.

``spendlog reconcile`` writes it (and draws the terminal table itself); the dashboard's download
can call ``report_csv``. Money is exact everywhere (``spendlog.report.money.money_exact``: plain
decimal, no exponent), because the differences worth finding are often fractions of a cent. A
difference is router minus ledger.

- CSV (RFC 4180, via ``spendlog.report.table.write_table``: text cells neutralised for spreadsheets):
  one row per day x model (``ROW_COLUMNS``; a side that has nothing is empty), then one row per
  month with ``status`` ``month_total``, ``day`` the month (``2026-11``), the two cost totals,
  their difference and ``unexplained_usd`` (a row's: its cost difference when it differs and no
  likely cause was found; a month's: the sum of its rows').
- JSON: one object, ``{"first", "last", "tolerance_usd", "ok", "spooled", "dropped", "counts":
  {status: n}, "rows": [...], "months": [...]}`` (a row or a month per line), money as exact
  decimal strings.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import TextIO

from spendlog.db.reconcile import COMPARED, STATUSES, Month, Report, Row

from .money import money_exact
from .table import write_table

__all__ = ["ROW_COLUMNS", "report_csv", "status_counts", "write_report"]

_SIDE = {"requests": "requests", "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens",
         "cost": "cost_usd"}
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
ROW_COLUMNS = (
    "day", "model", "status",
    *(f"{side}_{_SIDE[n]}" for n in COMPARED for side in ("router", "ledger")),
    *(f"{_SIDE[n]}_diff" for n in COMPARED),
    "unexplained_usd", "likely_causes",
)


def _value(row: Row, side: str, name: str):
    figures = row.router if side == "router" else row.ledger
    return None if figures is None else getattr(figures, name)


def _csv_row(row: Row) -> list:
    cells: list = [row.day, row.model, row.status]
    for n in COMPARED:
        cells += [_value(row, "router", n), _value(row, "ledger", n)]
    cells += [row.difference(n) for n in COMPARED]
    cells += [row.unexplained, "; ".join(row.causes) or None]
    return cells


def _csv_month(m: Month) -> list:
    cells: list = [m.month.strftime("%Y-%m"), None, "month_total"]
    cells += [None] * 6 + [m.router_cost, m.ledger_cost]
    cells += [None] * 3 + [m.difference, m.unexplained, None]
    return cells


def status_counts(report: Report) -> dict[str, int]:
    """How many rows have each status (every status listed, in ``STATUSES`` order)."""
    found = Counter(r.status for r in report.rows)
    return {s: found.get(s, 0) for s in STATUSES}


def _json(report: Report) -> str:
    def side(figures):
        if figures is None:
            return None
        return {_SIDE[n]: (money_exact(v) if n == "cost" else v)
                for n in COMPARED for v in [getattr(figures, n)]}

    rows = [{"day": r.day.isoformat(), "model": r.model, "status": r.status, "router": side(r.router),
             "ledger": side(r.ledger),
             "difference": {_SIDE[n]: (money_exact(r.difference(n)) if n == "cost" else r.difference(n))
                            for n in COMPARED},
             "unexplained_usd": money_exact(r.unexplained), "likely_causes": r.causes} for r in report.rows]
    months = [{"month": m.month.strftime("%Y-%m"), "first": m.first.isoformat(), "last": m.last.isoformat(),
               "router_cost_usd": money_exact(m.router_cost), "ledger_cost_usd": money_exact(m.ledger_cost),
               "difference_usd": money_exact(m.difference), "unexplained_usd": money_exact(m.unexplained),
               "rows": m.rows, "differing": m.differing} for m in report.months]
    head = {"first": report.first.isoformat(), "last": report.last.isoformat(),
            "tolerance_usd": money_exact(report.tolerance), "ok": report.ok, "spooled": report.spooled,
            "dropped": report.dropped, "counts": status_counts(report)}

    def items(values: list[dict]) -> str:  # one per line; without indent the encoder is the C one
        return "[" + ",".join("\n  " + _ENCODE(v) for v in values) + ("\n ]" if values else "]")

    return _ENCODE(head)[:-1] + f',\n "rows": {items(rows)},\n "months": {items(months)}\n}}\n'


def write_report(report: Report, fmt: str, out: TextIO) -> None:
    """Write ``report`` as ``csv`` or ``json`` to the text stream ``out`` (opened with ``newline=""``)."""
    if fmt == "csv":
        rows = [_csv_row(r) for r in report.rows] + [_csv_month(m) for m in report.months]
        write_table([rows], ROW_COLUMNS, "csv", out)
    elif fmt == "json":
        out.write(_json(report))
    else:
        raise ValueError(f"unknown format {fmt!r}: choose from csv, json")


def report_csv(report: Report) -> bytes:
    """The report's CSV as UTF-8 bytes (a download button)."""
    buf = io.StringIO(newline="")
    write_report(report, "csv", buf)
    return buf.getvalue().encode("utf-8")
