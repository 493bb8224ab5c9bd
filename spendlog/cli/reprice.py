"""`spendlog reprice`: price estimated and missing calls again (after a genai-prices upgrade or a new prices file)."""

from __future__ import annotations

import os
import sys

import click

from spendlog.db.errors import first_line

from ._common import db_option, fail, storage_errors

__all__ = ["reprice_cmd", "prices_option", "load_book", "use_prices_file"]


def prices_option(f):
    """``--prices FILE``: a TOML prices file read before genai-prices (default: $SPENDLOG_PRICES)."""
    return click.option("--prices", "prices_path", metavar="FILE", default=None,
                        help="TOML prices file read before genai-prices (default: $SPENDLOG_PRICES).")(f)


def load_book(prices_path: str | None):
    """The price book for ``--prices`` (else $SPENDLOG_PRICES); a bad file is one line, exit 2."""
    from spendlog.db.pricing import PricesFileError, load_price_book

    try:
        return load_price_book(prices_path)
    except PricesFileError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read prices file {prices_path or os.environ.get('SPENDLOG_PRICES')!r}: {exc.strerror or exc}")
    return None  # unreachable


def use_prices_file(prices_path: str | None) -> None:
    """For commands that record (the proxy): check the file now (one line, exit 2 if bad) and make
    this process's writer price with it (``$SPENDLOG_PRICES``, read once by ``db.estimate``)."""
    if prices_path is None and not os.environ.get("SPENDLOG_PRICES"):
        return
    load_book(prices_path)
    if prices_path is not None:
        os.environ["SPENDLOG_PRICES"] = os.path.abspath(prices_path)


def _bounds(from_value, to_value):
    from spendlog.db.periods import date_bounds

    from ._common import parse_date

    start_day, end_day = parse_date(from_value, "--from"), parse_date(to_value, "--to")
    if start_day and end_day and end_day < start_day:
        fail(f"--to {end_day} is before --from {start_day}")
    return date_bounds(start_day, end_day, "UTC")


@click.command("reprice")
@click.option("--from", "from_value", metavar="DATE", help="First UTC day to re-price, YYYY-MM-DD.")
@click.option("--to", "to_value", metavar="DATE", help="Last UTC day to re-price, YYYY-MM-DD (inclusive).")
@click.option("--model", "models", metavar="M", multiple=True, help="Only calls to this model id (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@prices_option
@db_option
def reprice_cmd(from_value, to_value, models, dry_run, prices_path, db_url) -> None:
    """Re-price estimated and missing calls with today's prices (never calls billed upstream)."""
    from spendlog.db.engine import make_engine, resolve_url
    from spendlog.db.migrate import ensure_schema
    from spendlog.db.reprice import count_repriceable, reprice
    from spendlog.report.money import money_display, money_exact

    start, end = _bounds(from_value, to_value)
    book = load_book(prices_path)
    url = resolve_url(db_url)
    engine = make_engine(url)
    try:
        with storage_errors("re-price", url):
            ensure_schema(engine)
            criteria = {"start": start, "end": end, "models": tuple(models)}
            if sys.stderr.isatty():
                total = count_repriceable(engine, **criteria)
                with click.progressbar(length=total, label="re-pricing", file=sys.stderr) as bar:
                    result = reprice(engine, book, dry_run=dry_run, progress=bar.update, **criteria)
            else:
                result = reprice(engine, book, dry_run=dry_run, **criteria)
    except ValueError as exc:
        fail(first_line(exc))
    finally:
        engine.dispose()
    verb = "would change" if dry_run else "changed"
    click.echo(f"{result.rows:,} estimated or missing calls looked at, {result.changed:,} {verb}")
    click.echo(f"old total {money_display(result.old_total)} (exact: {money_exact(result.old_total)} USD)")
    click.echo(f"new total {money_display(result.new_total)} (exact: {money_exact(result.new_total)} USD)")
