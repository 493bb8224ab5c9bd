"""`spendlog budget ...` as the user types it: one line and exit 2 for every mistake, exit 0/1 from
`budget check` by whether a budget is over."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from helpers import make_record

from spendlog.cli import cli
from spendlog.db.engine import make_engine
from spendlog.db.store import insert_records


def run(*args):
    done = CliRunner().invoke(cli, list(args))
    return done.exit_code, done.output


@pytest.mark.parametrize("args, message", [
    (["--amount", "ten"], "--amount 'ten' is not an amount in USD"),
    (["--amount", "0"], "--amount '0': the amount must be a positive number of USD"),
    (["--tz", "Mars/Olympus"], "--tz unknown timezone 'Mars/Olympus'"),
    (["--week-start", "someday"], "--week-start 'someday' is not a weekday"),
    (["--scope", "colour=red"], "--scope 'colour' is not a scope field"),
    (["--scope", "app"], "--scope 'app' is not FIELD=VALUE"),
    (["--alert-at", "50,x"], "--alert-at 'x' is not a whole percent"),
    (["--webhook", "ftp://example.com/SECRET/abcd"], "--webhook ftp://example.com/...abcd is not an http"),
    (["--period", "fortnight"], "Invalid value for '--period'"),
])
def test_add_mistakes_are_one_line_exit_2(args, message):
    base = {"--amount": "10", "--period": "month"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code, out = run("budget", "add", "b", *[x for kv in base.items() for x in kv])
    assert code == 2
    assert len(out.strip().splitlines()) == 1 and message in out and "SECRET" not in out


def test_add_list_show_check_remove():
    assert run("budget", "add", "monthly", "--amount", "10", "--period", "month", "--tz", "Asia/Kolkata",
               "--scope", "app=billing", "--scope", "tag:team=core", "--forecast", "--hard") == (
        0, "budget 'monthly' added\n")
    assert run("budget", "add", "monthly", "--amount", "5", "--period", "day")[0] == 2
    code, out = run("budget", "list", "--json")
    [listed] = json.loads(out)
    assert (code, listed["amount_usd"], listed["scope_text"], listed["hard"]) == (
        0, "10", "app=billing tag:team=core", True)
    code, out = run("budget", "check", "--json")
    assert code == 0 and json.loads(out)["budgets"][0]["status"] == "ok"
    engine = make_engine()
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime.now(timezone.utc), cost_usd=Decimal("10"),
                                          app="billing", tags={"team": "core"})])
    engine.dispose()
    code, out = run("budget", "check")
    assert code == 1 and "OVER" in out and "fired threshold:100 for monthly" in out
    code, out = run("budget", "show", "monthly")
    assert code == 0 and "alert threshold:100" in out and "no_target" in out
    assert run("budget", "show", "nope")[0] == 2
    assert run("budget", "remove", "monthly") == (0, "budget 'monthly' removed\n")
    assert run("budget", "remove", "monthly")[0] == 2
    assert run("budget", "check") == (0, "")


def test_watch_checks_again_every_interval(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    assert run("budget", "add", "d", "--amount", "1", "--period", "day")[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "spendlog", "budget", "watch", "--every", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        passes = 0
        buffer = ""
        while passes < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            buffer += line
            if line == "}\n":
                assert json.loads(buffer)["budgets"][0]["budget"] == "d"
                passes, buffer = passes + 1, ""
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0


def test_the_demo_ledger_gets_three_budgets_one_near_its_line(tmp_path):
    from spendlog.alerts import check_budgets
    from spendlog.demo.budgets import add_demo_budgets
    from spendlog.demo.run import backfill

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    backfill(url, 8, per_day=150)
    add_demo_budgets(url)
    engine = make_engine(url)
    statuses = {s.budget.name: s for s in check_budgets(engine, deliver=False).statuses}
    engine.dispose()
    assert sorted(statuses) == ["all monthly", "code-review daily", "support-bot monthly"]
    near = statuses["support-bot monthly"]
    assert Decimal(90) <= near.percent < Decimal(100) and near.status == "warning"
    hard = statuses["code-review daily"]
    assert hard.budget.hard and not hard.exhausted
