"""The demo ledger (its default size and seed) shows issue 15's features: exactly one spend spike,
on the day the generator builds it, driven by the agent app, and a week-over-week rise of the app
rolled out to more teams."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from spendlog.db.changes import compare
from spendlog.db.engine import make_engine
from spendlog.db.periods import date_bounds
from spendlog.db.queries import Filters
from spendlog.db.spikes import spend_spikes
from spendlog.demo import backfill
from spendlog.demo.traffic import LAUNCH_APP, SPIKE_APP, _spike_day

END = datetime(2026, 12, 2, 4, tzinfo=timezone.utc)  # a Wednesday


def test_the_demo_has_one_spike_and_a_week_over_week_change(sqlite_url):
    backfill(sqlite_url, 60, per_day=400, seed=7, end=END)  # `spendlog demo`'s defaults
    engine = make_engine(sqlite_url, pool=False)
    try:
        with engine.connect() as conn:
            found = spend_spikes(conn, Filters())
            last_day = END.date() - timedelta(days=1)
            start, end = date_bounds(last_day - timedelta(days=6), last_day, "UTC")
            apps = {c.value: c for c in compare(conn, Filters(start=start, end=end), "app")}
    finally:
        engine.dispose()
    assert [s.day for s in found] == [_spike_day(END)]
    assert dict(found[0].drivers[0].values)["app"] == SPIKE_APP
    assert apps[LAUNCH_APP].current > apps[LAUNCH_APP].previous * 13 / 10
