"""`spendlog export` and `spendlog summary`: spend for finance and for the shell.

Both read through ``spendlog.db.queries`` (the dashboard's numbers, to the last digit) with a
read-only engine, and turn every user mistake into one line and exit code 2.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from ._common import db_option, fail, output_file, parse_date, reading


def _parse_groups(value: str, *, allow_call: bool) -> list[str]:
    """``--by``: the rule is ``db.queries.parse_groups``; its ``ValueError`` becomes one usage line."""
    from spendlog.db.groups import parse_groups

    if not allow_call and "call" in (g.strip().lower() for g in value.split(",")):
        fail("--by call is for `spendlog export`")
    try:
        return list(parse_groups(value, allow_call=allow_call))
    except ValueError as exc:
        fail(f"--by {exc}")


def _filters(from_value, to_value, tz, tags=()):
    from spendlog.db.filters import parse_tag
    from spendlog.db.periods import date_bounds, get_zone
    from spendlog.db.queries import Filters

    pairs = []
    for text in tags:
        try:
            pairs.append(parse_tag(text))
        except ValueError as exc:
            fail(f"--tag {exc}")

    try:
        get_zone(tz)
    except ValueError as exc:
        fail(f"--tz: {exc}")
    start_day = parse_date(from_value, "--from")
    end_day = parse_date(to_value, "--to")
    try:  # the range rule is date_bounds' own; the CLI only names the options
        start, end = date_bounds(start_day, end_day, tz)
    except ValueError:
        fail(f"--to {end_day} is before --from {start_day}")
    return Filters(start=start, end=end, tags=tuple(pairs))


def _tz_option(f):
    return click.option(
        "--tz",
        default="UTC",
        envvar="SPENDLOG_TZ",
        show_default=True,
        metavar="ZONE",
        help="IANA timezone for --from/--to and for day/week/month boundaries (default: $SPENDLOG_TZ, else UTC).",
    )(f)


def _tag_option(f):
    return click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
                        help="Only calls tagged KEY=VALUE (as in team=core); repeat to require several tags.")(f)


def _range_options(f):
    f = click.option("--to", "to_value", metavar="DATE", help="Last day to include, YYYY-MM-DD (inclusive).")(f)
    f = click.option("--from", "from_value", metavar="DATE", help="First day to include, YYYY-MM-DD.")(f)
    return f


@click.command("export")
@_range_options
@_tag_option
@_tz_option
@click.option(
    "--by",
    "by_value",
    default=None,
    metavar="GROUPS",
    help="Comma list of day, week, month, model, provider, app, user, key, tag:KEY (the value of tag KEY); "
    "or `call` for one row per call (default: day,model; with --adjustments: call).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "focus"]),
    default="csv",
    show_default=True,
    help="csv, JSON lines, or FinOps FOCUS columns (CSV).",
)
@click.option("--as-closed", "as_closed", metavar="MONTH",
              help="A closed month (YYYY-MM) exactly as closed, whatever arrived since (`spendlog close`).")
@click.option("--adjustments", metavar="MONTH",
              help="Only the calls of a closed month (YYYY-MM) that arrived after its close.")
@click.option("-o", "--output", "output", default="-", metavar="FILE", help="Write to FILE instead of stdout.")
@db_option
@click.pass_context
def export_cmd(ctx, from_value, to_value, tags, tz, by_value, fmt, output, as_closed, adjustments, db_url) -> None:
    """Export spend as CSV, JSON lines or FinOps FOCUS for finance."""
    from spendlog.report.files import export_calls, export_grouped

    closed = _closed_options(from_value, to_value, as_closed, adjustments)
    if closed is not None and tags:
        fail(f"{'--as-closed' if as_closed else '--adjustments'} is a whole closed month: it takes no --tag")
    if as_closed:
        _export_as_closed(ctx, closed, tz, by_value, fmt, output, db_url)
        return
    by = _parse_groups(by_value or ("call" if adjustments else "day,model"), allow_call=True)
    filters = _filters(from_value, to_value, tz, tags) if closed is None else None
    if fmt == "focus" and by != ["call"] and sum(g in ("day", "week", "month") for g in by) != 1:
        fail("--format focus needs exactly one of day, week or month in --by (or --by call)")
    with reading(db_url) as conn, output_file(output) as (stream, target):
        if closed is not None:  # --adjustments: the late rows, periods in the close's zone
            from spendlog.db.closes import late_filters

            from .close import closed_month

            entry = closed_month(conn, closed, "--adjustments")
            tz = _close_zone(ctx, tz, entry)
            filters = late_filters(entry)
        if by == ["call"]:
            _say_if_pruned(conn, filters)
        show_progress = target is not None and by == ["call"] and sys.stderr.isatty()
        try:
            if by == ["call"]:
                with _progress(conn, filters, show_progress) as progress:
                    rows = export_calls(conn, filters, fmt, stream, progress=progress)
            else:
                rows = export_grouped(conn, filters, by, tz, fmt, stream)
        except BrokenPipeError:  # `spendlog export | head`: the reader left; not an error
            sys.stderr.close()
            raise SystemExit(0)
    if target is not None:
        click.echo(f"wrote {rows:,} rows to {target}", err=True)


def _given(ctx, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _closed_options(from_value, to_value, as_closed, adjustments) -> str | None:
    """``--as-closed`` / ``--adjustments``: the month (checked), or None for an ordinary export."""
    from .close import parse_month_option

    if as_closed and adjustments:
        fail("--as-closed and --adjustments are two files: ask for one")
    option, month = ("--as-closed", as_closed) if as_closed else ("--adjustments", adjustments)
    if not month:
        return None
    if from_value or to_value:
        fail(f"{option} is a whole closed month: it takes no --from/--to")
    return parse_month_option(month, option)


def _close_zone(ctx, tz: str, entry) -> str:
    """A closed month's periods are in its close's zone; a different --tz is a mistake."""
    if _given(ctx, "tz") and tz != entry.tz:
        fail(f"--tz: {entry.month} was closed in {entry.tz}")
    return entry.tz


def _export_as_closed(ctx, month: str, tz: str, by_value: str | None, fmt: str, output: str, db_url) -> None:
    """``--as-closed``: the stored totals, byte for byte what the month's export said at its close."""
    from spendlog.db.closes import CLOSED_GROUPS, ChecksumError
    from spendlog.report.closes import export_closed

    from .close import closed_month

    by = _parse_groups(by_value or "day,model", allow_call=False)
    if any(g not in CLOSED_GROUPS for g in by):
        fail(f"--as-closed groups by {', '.join(CLOSED_GROUPS)} (what a close keeps)")
    if fmt == "focus" and sum(g in ("day", "month") for g in by) != 1:
        fail("--as-closed --format focus needs exactly one of day or month in --by")
    with reading(db_url) as conn, output_file(output) as (stream, target):
        entry = closed_month(conn, month, "--as-closed")
        _close_zone(ctx, tz, entry)
        try:
            rows = export_closed(conn, entry, by, fmt, stream)
        except ChecksumError as exc:
            raise click.ClickException(str(exc)) from exc
    if target is not None:
        click.echo(f"wrote {rows:,} rows to {target}", err=True)


def _say_if_pruned(conn, filters) -> None:
    """A per-call file over a pruned range (``spendlog db prune``) lacks those calls: say so in one line
    rather than hand over a short file silently; the grouped exports still hold their totals."""
    from spendlog.db.prune import pruned_until, range_pruned

    if range_pruned(conn, filters.start, filters.end):
        click.echo(f"spendlog export: the ledger keeps calls from {pruned_until(conn):%Y-%m-%d %H:%M} UTC on (older ones "
                   "were pruned), so this per-call file lacks those; grouped exports (--by day,model ...) still hold "
                   "their totals", err=True)


@contextmanager
def _progress(conn, filters, enabled: bool):
    if not enabled:
        yield None
        return
    from spendlog.db.queries import count_calls

    with click.progressbar(length=count_calls(conn, filters), label="exporting", file=sys.stderr) as bar:
        yield bar.update


# ---------------------------------------------------------------- summary


@click.command("summary")
@_range_options
@_tag_option
@_tz_option
@click.option(
    "--by",
    "by_value",
    default="model,app",
    show_default=True,
    metavar="GROUPS",
    help="Comma list of breakdowns to print, one table each: model, provider, app, user, key, tag:KEY, day, week, "
    "month.",
)
@db_option
def summary_cmd(from_value, to_value, tags, tz, by_value, db_url) -> None:
    """Print spend totals per model and app as a terminal table."""
    from spendlog.report.summary import summary_lines

    by = _parse_groups(by_value, allow_call=False)
    filters = _filters(from_value, to_value, tz, tags)
    with reading(db_url) as conn:
        lines = summary_lines(conn, filters, by, tz, parse_date(from_value, "--from"), parse_date(to_value, "--to"))
    click.echo("\n".join(lines))
