"""Budget alerts fire exactly once, with a real webhook receiver on 127.0.0.1: across racing
`budget check` processes, through a receiver that fails then recovers, past a hung receiver; and the
webhook URL shows up in no output, log or ledger error."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record
from receiver import Receiver
from sqlalchemy import select

from spendlog.alerts import check_budgets
from spendlog.db.budgets import BudgetSpec, add_budget
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import Alert
from spendlog.db.store import insert_records

UTC = timezone.utc


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def ledger(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _budget(engine, name="team", amount="10", webhooks=(), **kw):
    with engine.begin() as conn:
        add_budget(conn, BudgetSpec(name=name, amount_usd=Decimal(amount), period=kw.pop("period", "month"),
                                    webhooks=tuple(webhooks), **kw), datetime.now(UTC))


def _spend(engine, cost: str, when: datetime | None = None, **extra):
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=when or datetime.now(UTC) - timedelta(seconds=1),
                                          cost_usd=Decimal(cost), **extra)])


def _cli(*args, db_url):
    return subprocess.Popen([sys.executable, "-m", "spendlog", "budget", *args, "--db", db_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SPENDLOG_DB_URL": db_url})


def _alerts(engine):
    with engine.connect() as conn:
        return {a.alert_key: a for a in conn.execute(select(Alert.__table__)).all()}


def test_four_racing_checks_fire_each_threshold_once(ledger, db_url, receivers):
    hook = receivers()
    _budget(ledger, webhooks=[hook.url])
    _spend(ledger, "9")  # 90%: 50 and 80 are due
    procs = [_cli("check", "--json", db_url=db_url) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    fired = [f["alert"] for out, _ in outs for f in json.loads(out)["fired"]]
    assert sorted(fired) == ["threshold:50", "threshold:80"]  # claimed once, by whichever process won
    bodies = hook.delivered()
    assert sorted(b["threshold"] for b in bodies) == [50, 80]
    assert len({b["alert_id"] for b in bodies}) == 2
    assert {b["event"] for b in bodies} == {"threshold_crossed"}
    body = bodies[0]
    assert set(body) >= {"text", "alert_id", "event", "budget", "scope", "period_start", "period_end", "amount",
                         "spent", "percent", "threshold", "forecast"}
    assert (body["budget"], body["amount"], body["spent"], body["percent"]) == ("team", "10", "9", "90.00")

    _spend(ledger, "1.5")  # 105%: over the line, 100 is due
    procs = [_cli("check", db_url=db_url) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [1, 1, 1, 1], [e for _, e in outs]  # cron sees "over"
    assert sorted(b["threshold"] for b in hook.delivered()) == [50, 80, 100]
    assert {a.state for a in _alerts(ledger).values()} == {"delivered"}
    for out, err in outs:
        assert hook.secret not in out + err


def test_a_failing_then_recovering_receiver_gets_every_alert_exactly_once(ledger, receivers):
    flaky, steady = receivers(fail_first=3), receivers()
    _budget(ledger, webhooks=[flaky.url, steady.url], forecast=True, period="day")
    # 03:00 yesterday, not "now": a day budget's forecast (6 + 6 * remaining / elapsed) passes 10 only
    # before 14:24, so a wall-clock t0 made this test fail every afternoon
    t0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    _spend(ledger, "6", when=t0 - timedelta(seconds=1))  # 60% at 3 h in: a forecast of 48, past the line
    first = check_budgets(ledger, t0)
    assert sorted(k for _, k in first.fired) == ["forecast", "threshold:50"]
    assert len(first.failed) == 2 and not first.delivered
    assert all(flaky.secret not in e and "127.0.0.1/..." in e for _, e in first.failed)
    assert len(steady.delivered()) == 2  # the good target took both at once

    again = check_budgets(ledger, t0 + timedelta(seconds=5))  # within the backoff: nothing goes
    assert (again.fired, again.delivered, again.failed) == ([], [], [])
    later = check_budgets(ledger, t0 + timedelta(seconds=31))  # one more failure (3 in all), then the other
    assert len(later.delivered) == 1 and len(later.failed) == 1
    last = check_budgets(ledger, t0 + timedelta(seconds=31 + 61))
    assert len(last.delivered) == 1 and not last.failed
    for when in (t0 + timedelta(minutes=30), t0 + timedelta(hours=2)):
        assert check_budgets(ledger, when).delivered == []

    for hook in (flaky, steady):
        ids = sorted(b["alert_id"] for b in hook.delivered())
        assert len(ids) == 2 and len(set(ids)) == 2  # each alert exactly once per target
    # every attempt sent the same body (fixed at the claim)
    by_id: dict[str, set] = {}
    for _, body in flaky.posts:
        by_id.setdefault(body["alert_id"], set()).add(json.dumps(body, sort_keys=True))
    assert all(len(v) == 1 for v in by_id.values())
    alerts = _alerts(ledger).values()
    assert {a.state for a in alerts} == {"delivered"}
    assert sorted(a.attempts for a in alerts) == [2, 3]  # 3 failures over 2 alerts, then one success each


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # one backend is enough for a 5 s wait
def test_a_hung_receiver_does_not_stall_the_check(ledger, db_url, receivers):
    hung = receivers(hang=True)
    _budget(ledger, webhooks=[hung.url], thresholds=(50,))
    _spend(ledger, "6")
    proc = _cli("check", db_url=db_url)
    out, err = proc.communicate(timeout=60)  # the check gives up on the receiver after 5 s
    assert proc.returncode == 0
    assert "no answer within the timeout" in err and hung.secret not in out + err
    [alert] = _alerts(ledger).values()
    assert (alert.state, alert.attempts) == ("failed", 1)
    assert hung.secret not in alert.last_error


def test_the_webhook_url_is_in_no_output_log_or_export(ledger, db_url, receivers, caplog):
    """Every command in this process (click's runner), with every logger at DEBUG: httpx logs each
    URL it posts to, masked here."""
    from click.testing import CliRunner

    from spendlog.cli import cli

    caplog.set_level(logging.DEBUG)
    failing, good = receivers(fail_first=100), receivers()
    runner = CliRunner()

    def run(*args):
        done = runner.invoke(cli, [*args, "--db", db_url])
        return done.output + (done.stderr if done.stderr_bytes is not None else "")

    texts = [run("budget", "add", "b", "--amount", "1", "--period", "week", "--webhook", failing.url,
                 "--webhook", good.url),
             run("budget", "add", "b", "--amount", "1", "--period", "week", "--webhook", failing.url)]
    _spend(ledger, "2")
    texts += [run("budget", "check"), run("budget", "check", "--json"), run("budget", "list"),
              run("budget", "list", "--json"), run("budget", "show", "b"), run("budget", "show", "b", "--json"),
              run("export", "--by", "model", "--format", "json"), run("db", "status")]
    texts.append(caplog.text)
    with ledger.connect() as conn:
        texts += [str(r) for r in conn.execute(select(Alert.__table__)).all()]
    assert len(good.delivered()) == 3 and len(failing.posts) == 3  # both tried: 50, 80, 100
    assert "HTTP Request: POST http://127.0.0.1/..." in caplog.text
    for text in texts:
        assert failing.secret not in text and good.secret not in text
    assert "exists already" in texts[1] and "http://127.0.0.1/..." in texts[5]
