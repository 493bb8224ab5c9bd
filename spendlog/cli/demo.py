"""`spendlog demo`: a living dashboard on generated data, in one command."""

from __future__ import annotations

import click

from ._common import fail, need_demo_extra


@click.command("demo")
@click.option("--db", "db_url", metavar="URL", default=None,
              help="Database for the demo data. Default: demo.db in the spendlog data dir, started afresh "
                   "(never $SPENDLOG_DB_URL: the demo does not write into your ledger).")
@click.option("--days", default=60, show_default=True, type=click.IntRange(0, 3650),
              help="Days of history to backfill (0: live calls only).")
@click.option("--per-day", default=400, show_default=True, type=click.FloatRange(1, 100_000),
              help="Average calls per day in the backfill (volume grows over the period).")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the traffic generator (same seed, same history).")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port of the dashboard.")
@click.option("--rate", "per_minute", default=30.0, show_default=True, type=click.FloatRange(0, 6000),
              help="Live calls per minute, through the hook and the proxy together (0: none).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser window (print the URL only).")
def demo_cmd(db_url: str | None, days: int, per_day: float, seed: int, port: int, per_minute: float,
             no_browser: bool) -> None:
    """Show a living dashboard on generated demo data (Ctrl+C stops)."""
    need_demo_extra("demo")
    from spendlog.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(db_url=db_url, days=days, per_day=per_day, seed=seed, port=port,
                          open_browser=not no_browser, per_minute=per_minute)
    try:
        return run_demo(options)
    except DemoError as exc:
        if "in use" in str(exc):
            fail(str(exc))
        raise click.ClickException(str(exc)) from None
