"""`spendlog budget ...`: budgets in the ledger, their check (for cron) and a watch loop."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import click

from ._common import db_option, fail, storage_errors

__all__ = ["budget_group"]


@contextmanager
def _ledger(db_url: str | None, action: str):
    """An engine on the ledger brought to the newest schema (budgets live in revision 0005)."""
    from spendlog.db.engine import make_engine, resolve_url
    from spendlog.db.migrate import ensure_schema

    url = resolve_url(db_url)
    engine = make_engine(url)
    try:
        with storage_errors(action, url):
            ensure_schema(engine)
            yield engine
    finally:
        engine.dispose()


@click.group("budget", no_args_is_help=True)
def budget_group() -> None:
    """Budgets: spending lines per period and scope, alerts that fire once, optional hard limits."""


@budget_group.command("add")
@click.argument("name")
@click.option("--amount", required=True, metavar="USD", help="The line, in USD (exact, e.g. 100 or 12.50).")
@click.option("--period", required=True, type=click.Choice(["day", "week", "month", "quarter", "year"]),
              help="The budget's calendar period; it starts at local midnight in --tz.")
@click.option("--tz", default="UTC", show_default=True, metavar="ZONE", help="IANA timezone of the period.")
@click.option("--week-start", default="monday", show_default=True, metavar="DAY",
              help="First day of a week period (monday ... sunday).")
@click.option("--scope", "scopes", multiple=True, metavar="FIELD=VALUE",
              help="Count only these calls: model=, provider=, app=, user=, key= (a key hint) or tag:KEY=VALUE "
                   "(repeatable; one field's values are alternatives, different fields must all match).")
@click.option("--alert-at", default="50,80,100", show_default=True, metavar="PCTS",
              help="Alert thresholds in percent of the amount, each fired once per period.")
@click.option("--forecast", is_flag=True, help="Also alert once when the period's forecast passes the amount.")
@click.option("--webhook", "webhooks", multiple=True, metavar="URL",
              help="Slack/Teams-compatible webhook to POST alerts to (repeatable; a secret: shown masked).")
@click.option("--hard", is_flag=True, help="Hard limit: the proxy and enforcing hooks refuse calls (402) once spent.")
@db_option
def add_cmd(name, amount, period, tz, week_start, scopes, alert_at, forecast, webhooks, hard, db_url) -> None:
    """Add a budget."""
    from spendlog.db.budgets import (BudgetExistsError, BudgetSpec, add_budget, parse_amount, parse_scope,
                                     parse_thresholds, parse_webhook)
    from spendlog.db.periods import get_zone, parse_week_start

    def checked(option, parse, value):
        try:
            return parse(value)
        except ValueError as exc:
            fail(f"{option} {exc}")

    spec_args = {
        "amount_usd": checked("--amount", parse_amount, amount),
        "week_start": checked("--week-start", parse_week_start, week_start),
        "scope": checked("--scope", parse_scope, scopes),
        "thresholds": checked("--alert-at", parse_thresholds, alert_at),
        "webhooks": tuple(checked("--webhook", parse_webhook, w) for w in webhooks),
    }
    checked("--tz", get_zone, tz)
    try:
        spec = BudgetSpec(name=name, period=period, tz=tz.strip(), forecast=forecast, hard=hard, **spec_args)
    except ValueError as exc:
        fail(str(exc))
    with _ledger(db_url, "add a budget to") as engine:
        try:
            with engine.begin() as conn:
                add_budget(conn, spec, datetime.now(timezone.utc))
        except BudgetExistsError as exc:
            fail(str(exc))
    click.echo(f"budget {spec.name!r} added")


@budget_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (exact amounts, webhooks masked).")
@db_option
def list_cmd(as_json, db_url) -> None:
    """List the budgets."""
    from spendlog.db.budgets import list_budgets, scope_text
    from spendlog.report.budgets import budget_dict, period_text
    from spendlog.report.money import money_display
    from spendlog.report.terminal import printable

    with _ledger(db_url, "read budgets from") as engine, engine.connect() as conn:
        budgets = list_budgets(conn)
    if as_json:
        click.echo(json.dumps([budget_dict(b) for b in budgets], indent=2))
        return
    if not budgets:
        click.echo("no budgets (add one: spendlog budget add NAME --amount USD --period month)")
    for b in budgets:
        kind = "hard" if b.hard else "soft"
        click.echo(f"{printable(b.name)}: {money_display(b.amount_usd)} per {period_text(b)}, "
                   f"{printable(scope_text(b.scope))}, {kind}, alerts at {','.join(map(str, b.thresholds))}%"
                   + (" + forecast" if b.forecast else "") + f", {len(b.webhooks)} webhook(s)")


@budget_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def show_cmd(name, as_json, db_url) -> None:
    """Show one budget: its settings, where it stands now, and its latest alerts."""
    from spendlog.db.budget_alerts import list_alerts
    from spendlog.db.budget_status import budget_status
    from spendlog.db.budgets import get_budget
    from spendlog.report.budgets import budget_dict, status_dict, status_line
    from spendlog.report.terminal import printable

    with _ledger(db_url, "read budgets from") as engine, engine.connect() as conn:
        budget = get_budget(conn, name)
        if budget is None:
            fail(f"no budget named {name!r} (see `spendlog budget list`)")
        status = budget_status(conn, budget, datetime.now(timezone.utc))
        alerts = list_alerts(conn, budget=budget.name, limit=20)
    if as_json:
        click.echo(json.dumps({**budget_dict(budget), "now": status_dict(status),
                               "alerts": [{"alert_id": a.alert_id, "alert": a.alert_key, "event": a.event,
                                           "period_start": a.period_start.isoformat(), "state": a.state,
                                           "attempts": a.attempts, "last_error": a.last_error} for a in alerts]},
                              indent=2))
        return
    info = budget_dict(budget)
    for key in ("name", "amount_usd", "period", "tz", "week_start", "scope_text", "alert_at", "forecast", "hard",
                "webhooks"):
        click.echo(f"{key}: {printable(str(info[key]))}")
    click.echo(printable(status_line(status)))
    for a in alerts:
        click.echo(f"alert {a.alert_key} ({a.period_start.isoformat()}): {a.state}, {a.attempts} attempt(s)"
                   + (f", last error: {printable(a.last_error)}" if a.last_error else ""))


@budget_group.command("remove")
@click.argument("name")
@db_option
def remove_cmd(name, db_url) -> None:
    """Remove a budget (and its webhooks and alerts)."""
    from spendlog.db.budgets import remove_budget

    with _ledger(db_url, "remove a budget from") as engine:
        with engine.begin() as conn:
            removed = remove_budget(conn, name)
    if not removed:
        fail(f"no budget named {name!r} (see `spendlog budget list`)")
    click.echo(f"budget {name.strip()!r} removed")


def _one_check(engine, as_json: bool) -> int:
    from spendlog.alerts import check_budgets
    from spendlog.report.budgets import status_dict, status_line
    from spendlog.report.terminal import printable

    result = check_budgets(engine)
    if as_json:
        click.echo(json.dumps({"budgets": [status_dict(s) for s in result.statuses],
                               "fired": [{"budget": b, "alert": k} for b, k in result.fired],
                               "delivered": result.delivered,
                               "failed": [{"alert_id": a, "error": e} for a, e in result.failed]}, indent=2))
    else:
        for status in result.statuses:
            click.echo(printable(status_line(status)))
        for budget, key in result.fired:
            click.echo(f"fired {key} for {printable(budget)}")
        for alert_id, error in result.failed:
            click.echo(f"delivery failed for alert {alert_id} (retried by a later check): {printable(error)}",
                       err=True)
    return 1 if result.any_over else 0


@budget_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def check_cmd(as_json, db_url) -> int:
    """One pass for cron: spend, forecast and status per budget; fire and deliver what is due. Exit 1 if any is over."""
    with _ledger(db_url, "check budgets in") as engine:
        return _one_check(engine, as_json)


@budget_group.command("watch")
@click.option("--every", default=60.0, show_default=True, type=click.FloatRange(min=1.0), metavar="SECONDS",
              help="Seconds between passes.")
@click.option("--json", "as_json", is_flag=True, help="Print each pass as JSON.")
@db_option
def watch_cmd(every, as_json, db_url) -> int:
    """Run `budget check` every --every seconds until interrupted (Ctrl+C); a failed pass is one line, then the next."""
    from spendlog.db.engine import mask_url
    from spendlog.db.errors import first_line

    with _ledger(db_url, "check budgets in") as engine:
        try:
            while True:
                try:
                    _one_check(engine, as_json)
                except Exception as exc:  # noqa: BLE001 - the ledger away for a moment: say so, try again
                    click.echo(f"spendlog: budget check of {mask_url(engine.url)} failed: {first_line(exc)}",
                               err=True)
                sys.stdout.flush()
                time.sleep(every)
        except KeyboardInterrupt:
            return 0
