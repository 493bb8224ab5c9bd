"""`spendlog reconcile`: the router's activity against the ledger, per UTC day x model.

The activity comes from a file (``spendlog.db.activity``) or from the router itself
(``--from-upstream``, ``spendlog.db.activity_upstream``); the comparison is
``spendlog.db.reconcile``; CSV and JSON are ``spendlog.report.reconcile``. Exit status: 0 when
every row matches within the tolerance, 1 when something differs, 2 on bad input.
"""

from __future__ import annotations

import re
import sys
from contextlib import nullcontext
from datetime import timedelta
from decimal import Decimal

import click

from spendlog.report.terminal import printable, text_table

from ._common import db_option, fail, output_file, parse_date, reading

_TOLERANCE = re.compile(r"\d{1,12}(\.\d{1,30})?|\.\d{1,30}")


def _tolerance(value: str) -> Decimal:
    if not _TOLERANCE.fullmatch(value.strip()):
        fail(f"--tolerance {value!r} is not an amount in USD: use a plain decimal such as 0.01")
    return Decimal(value.strip())


def _pair(row, name: str) -> str:
    def one(figures):
        return "-" if figures is None else f"{getattr(figures, name):,}"

    return f"{one(row.router)} / {one(row.ledger)}"


def _table(report, show_all: bool) -> str:
    from spendlog.report.money import money_exact
    from spendlog.report.reconcile import status_counts

    def money(figures) -> str:
        return "-" if figures is None else money_exact(figures.cost)

    out = []
    shown = report.rows if show_all else report.differing
    if shown:
        header = ["day", "model", "status", "requests r/l", "prompt tok r/l", "completion tok r/l",
                  "router USD", "ledger USD", "difference USD"]
        body = [[r.day.isoformat(), printable(r.model), r.status, _pair(r, "requests"), _pair(r, "prompt_tokens"),
                 _pair(r, "completion_tokens"), money(r.router), money(r.ledger), money_exact(r.difference("cost"))]
                for r in shown]
        out += text_table(f"Reconciliation {report.first} .. {report.last} (UTC days), router vs ledger (r/l), "
                          f"tolerance {money_exact(report.tolerance)} USD", header, body, right={3, 4, 5, 6, 7, 8})
        explained = [r for r in report.differing if r.causes]
        if explained:
            out += ["", "Likely causes:"]
            out += [f"  {r.day} {printable(r.model)}: " + "; ".join(printable(c) for c in r.causes) for r in explained]
        out.append("")
    body = [[m.month.strftime("%Y-%m"), money_exact(m.router_cost), money_exact(m.ledger_cost),
             money_exact(m.difference), money_exact(m.unexplained)] for m in report.months]
    out += text_table("By month", ["month", "router USD", "ledger USD", "difference USD", "unexplained USD"],
                      body, right={1, 2, 3, 4})
    out.append("")
    counts, total = status_counts(report), len(report.rows)
    if report.ok:
        out.append(f"All {total:,} day x model rows match ({report.first} .. {report.last}, UTC).")
    else:
        parts = ", ".join(f"{n:,} {s}" for s, n in counts.items() if n and s != "match")
        out.append(f"{total - counts['match']:,} of {total:,} day x model rows differ: {parts}.")
    if report.spooled or report.dropped:
        out.append(f"The ledger has {report.spooled:,} spooled records not yet in the database and "
                   f"{report.dropped:,} dropped ones (spendlog db status).")
    return "\n".join(out) + "\n"


def _from_file(path: str, columns: str | None, first, last):
    from spendlog.db.activity import ActivityError, parse_columns, read_activity

    name = "stdin" if path == "-" else path
    try:
        mapping = parse_columns(columns)
        if path == "-":
            return read_activity(sys.stdin.buffer, name=name, columns=mapping, first=first, last=last)
        try:
            fh = open(path, "rb")
        except OSError as exc:
            fail(f"cannot read {path!r}: {exc.strerror or exc}")
        with fh:
            return read_activity(fh, name=name, columns=mapping, first=first, last=last)
    except ActivityError as exc:
        fail(str(exc))


def _from_upstream(upstream: str | None, timeout: float, first, last):
    from spendlog.db.activity import ActivityError
    from spendlog.db.activity_upstream import (ROUTER_WINDOW_DAYS, UpstreamError, activity_url, default_range,
                                               fetch_activity, management_key)

    try:
        url = activity_url(upstream)
        key = management_key()
        given_last = last is not None
        last = last or default_range()[1]
        first = first or last - timedelta(days=ROUTER_WINDOW_DAYS - 1)
        if first > last:
            fail(f"--from {first} is after --to {last}" + ("" if given_last else " (yesterday, the default)"))
        days = (last - first).days + 1
        bar = (click.progressbar(length=days, label="reading the router's activity", file=sys.stderr)
               if sys.stderr.isatty() and days > 1 else nullcontext(None))
        with bar as progress:
            activity = fetch_activity(url, key, first, last, timeout=timeout,
                                      progress=progress.update if progress is not None else None)
    except (UpstreamError, ActivityError) as exc:
        fail(str(exc))
    return activity, first, last


@click.command("reconcile")
@click.argument("file", required=False, metavar="[FILE]")
@click.option("--from-upstream", is_flag=True,
              help="Read the activity from the router's GET /activity instead of FILE (management key in "
                   "$SOLROUTER_MANAGEMENT_KEY, never a flag).")
@click.option("--upstream", metavar="URL",
              help="The router's API base URL for --from-upstream. Default: $SOLROUTER_BASE_URL, else "
                   "https://api.solrouter.io/v1.")
@click.option("--from", "from_value", metavar="DATE",
              help="First UTC day, YYYY-MM-DD. Default: FILE's first day; --from-upstream: 30 days before --to.")
@click.option("--to", "to_value", metavar="DATE",
              help="Last UTC day, YYYY-MM-DD (inclusive). Default: FILE's last day; --from-upstream: yesterday.")
@click.option("--tolerance", "tolerance_value", default="0", show_default=True, metavar="USD",
              help="Largest cost difference per day x model that still counts as a match (counts must be equal).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="A terminal table (rows that differ), or CSV / JSON with every row and the month totals.")
@click.option("-o", "--output", "output", default="-", metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--columns", metavar="OURS=THEIRS,...",
              help="Map another export's column names (JSON keys) to ours, e.g. 'cost=Total Cost,date=Day'.")
@click.option("--all", "show_all", is_flag=True, help="In the table, list the rows that match too.")
@click.option("--timeout", type=click.FloatRange(0, 600, min_open=True), default=30.0, show_default=True,
              metavar="SECONDS", help="--from-upstream: how long to wait for each of the router's answers.")
@db_option
def reconcile_cmd(file, from_upstream, upstream, from_value, to_value, tolerance_value, fmt, output, columns,
                  show_all, timeout, db_url) -> int:
    """Compare the router's activity with the ledger per UTC day and model.

    Always in UTC days, whatever SPENDLOG_TZ says: the router reports UTC days. FILE is the
    router's activity as JSON (an array, or an object with "data") or CSV with the headers of
    OpenRouter's GET /api/v1/activity: date, model, requests, usage (USD), prompt_tokens,
    completion_tokens (and optionally reasoning_tokens, provider_name, byok_usage_inference,
    model_permaslug, endpoint_id); "-" reads stdin. The ledger side leaves out error rows (the
    router bills none). Exit status: 0 everything matches within --tolerance, 1 something
    differs, 2 bad input.
    """
    from spendlog.db.engine import resolve_url
    from spendlog.db.reconcile import reconcile
    from spendlog.report.reconcile import write_report

    if from_upstream == (file is not None):
        fail("give an activity FILE or --from-upstream (one of the two)")
    if upstream is not None and not from_upstream:
        fail("--upstream goes with --from-upstream")
    if columns is not None and from_upstream:
        fail("--columns maps a file's columns; the router's own answer needs none")
    tolerance = _tolerance(tolerance_value)
    first, last = parse_date(from_value, "--from"), parse_date(to_value, "--to")
    if first and last and first > last:
        fail(f"--from {first} is after --to {last}")
    url = resolve_url(db_url)  # a bad URL: one line, exit 2, before any file or network work
    with reading(db_url) as conn:
        if from_upstream:
            activity, first, last = _from_upstream(upstream, timeout, first, last)
        else:
            activity = _from_file(file, columns, first, last)
            if activity.span is None and (first is None or last is None):
                where = f" on or after {first}" if first else f" up to {last}" if last else ""
                fail(f"{file} has no activity rows{where}: give --from and --to to compare the ledger "
                     "with an empty activity")
            first, last = first or activity.span[0], last or activity.span[1]  # rows lie within both
        report = reconcile(conn, activity, first, last, tolerance=tolerance, url=url)
    code = 0 if report.ok else 1
    if activity.skipped:
        click.echo(f"note: {activity.skipped:,} activity rows outside {first} .. {last} left out", err=True)
    with output_file(output) as (stream, target):
        try:
            if fmt == "table":
                stream.write(_table(report, show_all))
            else:
                write_report(report, fmt, stream)
        except BrokenPipeError:  # `spendlog reconcile ... | head`: the reader left; the verdict stands
            sys.stderr.close()
            raise SystemExit(code)
    if target is not None:
        click.echo(f"wrote {len(report.rows):,} rows to {target}", err=True)
    return code
