"""db/spikes.py on ledgers built to have spikes and not to (SQLite and PostgreSQL): a spike is found
exactly where one was built and nowhere else; the one-line explanation names what drove it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import add_records, make_record

from spendlog.db import spikes
from spendlog.db.periods import date_bounds
from spendlog.db.queries import Filters, grouped_totals
from spendlog.db.spikes import drivers_of, judge_days, median, spend_spikes
from spendlog.report.changes import spike_line

UTC = timezone.utc
DAY0 = date(2025, 3, 1)
NOISE = [Decimal(x) for x in ("0", "1", "-1", "0.5", "-0.5", "2", "-2")]  # MAD 1 around $10


@pytest.fixture
def conn(ledger_conn):
    return ledger_conn


add = add_records


def call(day: date, cost: Decimal, app="bot", model="openai/gpt-4o-mini", hour=12, minute=0, **kw) -> dict:
    at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
    return make_record(created_at=at, cost_usd=cost, app=app, model=model, provider=model.split("/")[0], **kw)


def noisy_days(n: int, first: date = DAY0, base=Decimal(10)) -> list[dict]:
    """``n`` days from ``first`` of about ``base`` (two calls a day: bot on mini, etl on gpt-4o)."""
    out = []
    for i in range(n):
        day = first + timedelta(days=i)
        total = base + NOISE[i % len(NOISE)]
        out += [call(day, total - 3), call(day, Decimal(3), app="etl", model="openai/gpt-4o", hour=15)]
    return out


def days_of(found) -> list[date]:
    return [s.day for s in found]


def test_median_is_exact():
    assert median([Decimal("0.000000000001"), Decimal("0.000000000002")]) == Decimal("0.0000000000015")
    assert median([Decimal(3), Decimal(1), Decimal(2)]) == 2
    with pytest.raises(ValueError):
        median([])


def test_a_flat_ledger_has_no_spike(conn):
    add(conn, [call(DAY0 + timedelta(days=i), Decimal("9.30")) for i in range(40)])
    assert spend_spikes(conn, Filters()) == []


def test_a_noisy_ledger_without_a_spike_has_none(conn):
    add(conn, noisy_days(45))
    assert spend_spikes(conn, Filters()) == []


def test_the_built_spike_is_found_there_and_nowhere_else(conn):
    records = noisy_days(30)
    spike_day = DAY0 + timedelta(days=20)
    records.append(call(spike_day, Decimal("36.00"), app="etl", model="openai/gpt-4o", hour=16))
    records.append(call(spike_day, Decimal("3.00"), app="bot", model="openai/gpt-4o-mini", hour=17))
    add(conn, records)
    found = spend_spikes(conn, Filters())
    assert days_of(found) == [spike_day]
    spike = found[0]
    usual_days = [DAY0 + timedelta(days=i) for i in range(6, 20)]
    totals = [Decimal(10) + NOISE[(d - DAY0).days % 7] for d in usual_days]
    assert spike.usual == median(totals) == Decimal(10)
    assert spike.spend == Decimal(10) + NOISE[20 % 7] + Decimal("39.00")
    assert spike.mad == Decimal(1)
    assert spike.threshold == Decimal(16)  # 10 + 3 x max(MAD 1, 20% of 10)
    top = spike.drivers[0]
    assert dict(top.values) == {"app": "etl", "model": "openai/gpt-4o"}
    assert (top.spend, top.usual, top.rise) == (Decimal(39), Decimal(3), Decimal(36))
    assert spike_line(spike) == (f"{spike_day.isoformat()}: $47.00 against a usual $10.00; "
                                 "+$36.00 from app=etl on openai/gpt-4o; +$1.00 from app=bot on openai/gpt-4o-mini")


def test_a_ramp_is_not_a_spike_but_a_jump_on_it_is(conn):
    records = [call(DAY0 + timedelta(days=i), Decimal(5) + Decimal(i) * Decimal("1.5")) for i in range(40)]
    add(conn, records)
    assert spend_spikes(conn, Filters()) == []
    jump = DAY0 + timedelta(days=33)
    add(conn, [call(jump, Decimal(30), app="etl")])  # +30 over a ramp (14-day MAD 5.25, 20% of the median 8.65)
    assert days_of(spend_spikes(conn, Filters())) == [jump]


def test_a_gap_of_empty_days_is_neither_judged_nor_a_zero_in_the_norm(conn):
    before = noisy_days(20)
    after_gap = DAY0 + timedelta(days=32)  # days 20..31 have no calls at all
    after = noisy_days(15, first=after_gap)
    add(conn, before + after)
    assert spend_spikes(conn, Filters()) == []  # $10 after the gap is the usual $10, not a jump from $0
    spike_day = after_gap + timedelta(days=1)
    add(conn, [call(spike_day, Decimal(25), app="etl", hour=18)])
    found = spend_spikes(conn, Filters())
    assert days_of(found) == [spike_day]
    assert found[0].usual == Decimal(10)  # the 14 observed days before the gap and after it
    # a range that starts right after the gap reads its norm from before the gap (the second read)
    start, end = date_bounds(spike_day, spike_day + timedelta(days=5), "UTC")
    ranged = spend_spikes(conn, Filters(start=start, end=end))
    assert ranged == found


def test_too_little_history_is_never_a_spike(conn):
    records = noisy_days(12)
    add(conn, records + [call(DAY0 + timedelta(days=5), Decimal(100))])  # 5 earlier days: not judged
    assert spend_spikes(conn, Filters()) == []
    add(conn, [call(DAY0 + timedelta(days=7), Decimal(100))])  # 7 earlier days: judged
    assert days_of(spend_spikes(conn, Filters())) == [DAY0 + timedelta(days=7)]


def test_mad_zero_uses_the_floor(conn):
    add(conn, [call(DAY0 + timedelta(days=i), Decimal(10)) for i in range(20)])
    add(conn, [call(DAY0 + timedelta(days=15), Decimal("5.99"), app="etl"),  # 15.99 <= 10 + 3 x 20% of 10
               call(DAY0 + timedelta(days=17), Decimal("6.01"), app="etl")])  # 16.01 > 16.00
    found = spend_spikes(conn, Filters())
    assert days_of(found) == [DAY0 + timedelta(days=17)]
    assert (found[0].mad, found[0].threshold) == (Decimal(0), Decimal(16))


def test_days_are_local_days_of_the_chosen_timezone(conn):
    records = [call(DAY0 + timedelta(days=i), Decimal(10), hour=3) for i in range(25)]  # 12:00 in Tokyo
    late = DAY0 + timedelta(days=18)
    records.append(call(late, Decimal(30), app="etl", hour=20))  # 05:00 the next day in Tokyo
    add(conn, records)
    assert days_of(spend_spikes(conn, Filters(), "UTC")) == [late]
    assert days_of(spend_spikes(conn, Filters(), "Asia/Tokyo")) == [late + timedelta(days=1)]
    assert days_of(spend_spikes(conn, Filters(), "America/New_York")) == [late]  # 16:00 there


def test_only_days_in_the_range_are_reported_judged_against_the_days_before_it(conn):
    records = noisy_days(30)
    early, inside = DAY0 + timedelta(days=10), DAY0 + timedelta(days=25)
    records += [call(early, Decimal(40), app="etl"), call(inside, Decimal(40), app="etl")]
    add(conn, records)
    assert days_of(spend_spikes(conn, Filters())) == [early, inside]
    start, end = date_bounds(DAY0 + timedelta(days=20), DAY0 + timedelta(days=29), "UTC")
    assert days_of(spend_spikes(conn, Filters(start=start, end=end))) == [inside]
    # the same with the range's day totals given (as the dashboard has them): only the days before are read
    ranged = Filters(start=start, end=end)
    known = {r["day"]: r["cost_usd"] for r in grouped_totals(conn, ranged, ("day",)) if r["requests"]}
    assert spend_spikes(conn, ranged, known=known) == spend_spikes(conn, ranged)


def test_filters_and_other_driver_dimensions(conn):
    records = noisy_days(30)
    spike_day = DAY0 + timedelta(days=22)
    records.append(call(spike_day, Decimal(20), app="etl", model="openai/gpt-4o", user="mallory"))
    add(conn, records)
    only_bot = spend_spikes(conn, Filters(apps=("bot",)))
    assert only_bot == []
    by_user = spend_spikes(conn, Filters(), drivers=["user"])
    assert days_of(by_user) == [spike_day]
    assert spike_line(by_user[0]) == ("2025-03-23: $31.00 against a usual $10.00; +$20.00 from user=mallory; "
                                      "+$1.00 from user=alice")  # day 22's noise: +1 on alice's calls
    with pytest.raises(ValueError):
        spend_spikes(conn, Filters(), drivers=["day"])


def test_the_rule_as_functions():
    totals = {DAY0 + timedelta(days=i): Decimal(10) for i in range(spikes.WINDOW + 5)}
    last = max(totals)
    totals[last] = Decimal("16.000000000001")  # > 10 + 3 x 20% of 10
    (judged,) = judge_days(totals)
    assert (judged.day, judged.usual, judged.threshold) == (last, Decimal(10), Decimal(16))
    assert judged.norm_days == tuple(sorted(totals)[-15:-1])
    totals[last] = Decimal(16)  # 16 is not more than 16
    assert judge_days(totals) == []
    assert judge_days(totals, first=last + timedelta(days=1)) == []
    # drivers: the day's spend per value against its mean over the norm days
    found = drivers_of({("a",): Decimal(12), ("b",): Decimal(5), ("c",): Decimal(1)},
                       {("a",): Decimal(140), ("c",): Decimal(28)}, 14, ("app",))
    assert [(d.describe(), d.usual, d.rise) for d in found] == [("app=b", 0, 5), ("app=a", 10, 2)]
    assert drivers_of({("a",): Decimal(1)}, {("a",): Decimal(5)}, 14, ("app",))[0].usual == Decimal(
        "0.357142857143")  # 5/14, to the ledger's 12 places


def test_summary_prints_the_spike_lines_and_the_cache_section(conn, db_url):
    from click.testing import CliRunner

    from spendlog.cli import cli

    records = noisy_days(30)
    spike_day = DAY0 + timedelta(days=20)
    records.append(call(spike_day, Decimal(36), app="etl", model="openai/gpt-4o", hour=16))
    add(conn, records)
    expected = spike_line(spend_spikes(conn, Filters())[0])
    conn.commit()
    result = CliRunner().invoke(cli, ["summary", "--db", db_url])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Spikes        1 (a day more than 3 MADs over its trailing 14-day median):" in lines
    assert f"  {expected}" in lines and expected.startswith("2025-03-21: $44.00 against a usual $10.00; +$36.00")
    assert "Cache         0 of 915 prompt tokens cached (0.0%); saved – at list prices" in lines
    quiet = CliRunner().invoke(cli, ["summary", "--db", db_url, "--from", "2025-03-01", "--to", "2025-03-15"])
    assert "Spikes        none (a day more than 3 MADs over its trailing 14-day median)" in quiet.stdout.splitlines()
