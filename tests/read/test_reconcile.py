"""`spendlog reconcile` end to end on SQLite and PostgreSQL: real calls through the hook and the
proxy against the fake upstream, reconciled against the fake's own GET /v1/activity (as a JSON
file, as a CSV file, and with --from-upstream); calls made around spendlog; a cost edited in the
file; calls at 23:59:59 and 00:00:00 UTC; the likely causes the ledger can point at."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from fixture_proxy import rows as ledger_rows
from helpers import make_record, spool_line
from reconcile_helpers import (MESSAGES, activity_csv, activity_json, away_from_midnight, billed, chat,
                               hooked_client, plain_client, reconcile, reconcile_json, rows_by_key)

from spendlog.db.engine import make_engine, resolve_url
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records
from spendlog.db.writer import spool_path
from spendlog.report.money import money_exact

MINI, SONNET, GPT4O, R1 = "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "openai/gpt-4o", "deepseek/deepseek-r1"


def _files(fake, day: str, tmp_path) -> list[str]:
    doc = activity_json(fake, day, day)
    (tmp_path / "activity.json").write_bytes(doc)
    (tmp_path / "activity.csv").write_bytes(activity_csv(doc))
    return [str(tmp_path / "activity.json"), str(tmp_path / "activity.csv")]


def _upstream(fake, day: str, *args: str):
    env = {"SOLROUTER_MANAGEMENT_KEY": fake.management_key}
    return reconcile_json("--from-upstream", "--upstream", fake.base_url, "--from", day, "--to", day, *args, env=env)


def _seed(db_url: str, records: list[dict]) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    engine.dispose()


def test_a_ledger_and_a_router_that_agree_give_exit_0(db_url, fake_upstream, proxy_factory, tmp_path):
    day = away_from_midnight()
    hooked = hooked_client(fake_upstream.base_url, fake_upstream.api_key, db_url)
    chat(hooked, MINI, 2)
    chat(hooked, SONNET)
    stream = hooked.chat.completions.create(model=MINI, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with pytest.raises(Exception):
        chat(hooked, "fake/error-500")  # recorded as an error row; the router bills nothing
    proxy = proxy_factory(fake_upstream.base_url, db_url=db_url, shutdown_timeout=2)
    chat(plain_client(proxy.base_url, fake_upstream.api_key), R1)  # through the proxy: reasoning tokens too
    assert len(ledger_rows(db_url, expect=6)) == 6

    for path in _files(fake_upstream, day, tmp_path):
        code, out, err = reconcile(path, "--db", db_url)
        assert (code, err) == (0, ""), out
        assert "All 3 day x model rows match" in out
    code, doc = _upstream(fake_upstream, day, "--db", db_url)
    assert code == 0 and doc["ok"] is True
    assert {(r["model"], r["status"], r["router"]["requests"]) for r in doc["rows"]} == {
        (MINI, "match", 3), (SONNET, "match", 1), (R1, "match", 1)}
    assert "fake/error-500" not in {r["model"] for r in doc["rows"]}  # the error row is left out on both sides
    (month,) = doc["months"]
    assert month["router_cost_usd"] == month["ledger_cost_usd"] == money_exact(billed(MINI, 3) + billed(SONNET) + billed(R1))
    assert month["difference_usd"] == month["unexplained_usd"] == "0"


def test_calls_made_around_spendlog_show_with_their_exact_cost(db_url, fake_upstream, tmp_path):
    day = away_from_midnight()
    chat(hooked_client(fake_upstream.base_url, fake_upstream.api_key, db_url), MINI, 2)
    around = plain_client(fake_upstream.base_url, fake_upstream.api_key)
    chat(around, MINI)  # the same model: the counts differ
    chat(around, GPT4O, 2)  # a model the ledger never saw
    expected = {
        (day, MINI): ("count_differs", 1, money_exact(billed(MINI))),
        (day, GPT4O): ("missing_in_ledger", 2, money_exact(billed(GPT4O, 2))),
    }
    docs = [reconcile_json(path, "--db", db_url) for path in _files(fake_upstream, day, tmp_path)]
    docs.append(_upstream(fake_upstream, day, "--db", db_url))
    for code, doc in docs:
        assert code == 1 and doc["ok"] is False
        got = {k: (r["status"], r["difference"]["requests"], r["difference"]["cost_usd"])
               for k, r in rows_by_key(doc).items()}
        assert got == expected
        assert rows_by_key(doc)[(day, GPT4O)]["ledger"] is None
        (month,) = doc["months"]
        total = money_exact(billed(MINI) + billed(GPT4O, 2))
        assert month["difference_usd"] == month["unexplained_usd"] == total  # nothing in the ledger explains them
        assert doc["counts"] == {"match": 0, "missing_in_ledger": 1, "missing_in_router": 0, "count_differs": 1,
                                 "cost_differs": 0}
    code, out, err = reconcile(str(tmp_path / "activity.csv"), "--db", db_url)
    assert code == 1 and "count_differs" in out and "missing_in_ledger" in out
    assert "2 of 2 day x model rows differ: 1 missing_in_ledger, 1 count_differs." in out


def test_ledger_calls_the_router_never_billed_are_missing_in_router(db_url, tmp_path):
    at = datetime(2025, 6, 3, 12, 0, tzinfo=timezone.utc)
    _seed(db_url, [make_record(created_at=at, model="openai/o1", cost_usd=Decimal("0.5"))])
    (tmp_path / "a.csv").write_text("date,model,requests,usage,prompt_tokens,completion_tokens\n"
                                    "2025-06-03,openai/gpt-4o-mini,1,0.0000148,15,83\n")
    code, doc = reconcile_json(str(tmp_path / "a.csv"), "--db", db_url, "--to", "2025-06-04")
    assert code == 1
    rows = rows_by_key(doc)
    assert rows[("2025-06-03", "openai/o1")]["status"] == "missing_in_router"
    assert rows[("2025-06-03", "openai/o1")]["difference"]["cost_usd"] == "-0.5"
    assert rows[("2025-06-03", "openai/gpt-4o-mini")]["status"] == "missing_in_ledger"
    assert (doc["first"], doc["last"]) == ("2025-06-03", "2025-06-04")


def test_a_cost_edited_in_the_file_is_cost_differs_beyond_the_tolerance(db_url, fake_upstream, tmp_path):
    day = away_from_midnight()
    chat(hooked_client(fake_upstream.base_url, fake_upstream.api_key, db_url), MINI, 3)
    doc = activity_json(fake_upstream, day, day)
    literal = money_exact(billed(MINI, 3))
    assert f'"usage":{literal},'.encode() in doc
    edited = tmp_path / "edited.json"
    edited.write_bytes(doc.replace(f'"usage":{literal},'.encode(),
                                   f'"usage":{money_exact(billed(MINI, 3) + Decimal("0.001"))},'.encode()))
    for tolerance, status in (("0", "cost_differs"), ("0.0009999", "cost_differs"), ("0.001", "match"),
                              ("0.5", "match")):
        code, report = reconcile_json(str(edited), "--db", db_url, "--tolerance", tolerance)
        (row,) = report["rows"]
        assert (code, row["status"]) == ((0 if status == "match" else 1), status), tolerance
        assert row["difference"] == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": "0.001"}
    code, out, _ = reconcile(str(edited), "--db", db_url)
    assert code == 1 and "cost_differs" in out


def _fake_call(fake, model: str, when: str) -> dict:
    r = httpx.post(fake.url("chat/completions"), json={"model": model, "messages": MESSAGES},
                   headers={"Authorization": f"Bearer {fake.api_key}", "X-Fake-Time": when}, timeout=10)
    assert r.status_code == 200, r.text
    return json.loads(r.content, parse_float=Decimal)["usage"]


def _ledger_call(model: str, usage: dict, when: datetime) -> dict:
    return make_record(created_at=when, model=model, requested_model=model, prompt_tokens=usage["prompt_tokens"],
                       completion_tokens=usage["completion_tokens"], total_tokens=usage["total_tokens"],
                       cost_usd=usage["cost"])


def test_calls_at_23_59_59_and_00_00_00_utc_fall_on_their_days(db_url, fake_upstream, tmp_path):
    late = _fake_call(fake_upstream, MINI, "2025-03-31T23:59:59Z")
    early = _fake_call(fake_upstream, MINI, "2025-04-01T00:00:00Z")
    # the same call seen 0.2 s apart by the app and the router, across midnight (and a month end)
    crossing = _fake_call(fake_upstream, SONNET, "2025-04-01T00:00:00.100Z")
    utc = timezone.utc
    _seed(db_url, [_ledger_call(MINI, late, datetime(2025, 3, 31, 23, 59, 59, tzinfo=utc)),
                   _ledger_call(MINI, early, datetime(2025, 4, 1, 0, 0, 0, tzinfo=utc)),
                   _ledger_call(SONNET, crossing, datetime(2025, 3, 31, 23, 59, 59, 900_000, tzinfo=utc))])
    doc = activity_json(fake_upstream, "2025-03-31", "2025-04-01")
    (tmp_path / "a.json").write_bytes(doc)
    code, report = reconcile_json(str(tmp_path / "a.json"), "--db", db_url)
    assert code == 1
    rows = rows_by_key(report)
    for day, usage in (("2025-03-31", late), ("2025-04-01", early)):
        row = rows[(day, MINI)]
        assert row["status"] == "match" and row["router"]["requests"] == row["ledger"]["requests"] == 1
        assert row["router"]["cost_usd"] == money_exact(usage["cost"])
    assert rows[("2025-03-31", SONNET)]["status"] == "missing_in_router"
    assert rows[("2025-04-01", SONNET)]["status"] == "missing_in_ledger"
    for day in ("2025-03-31", "2025-04-01"):
        (cause,) = rows[(day, SONNET)]["likely_causes"]
        assert cause.startswith("1 ledger call within 5 minutes of midnight UTC (2025-04-01 00:00)")
    march, april = report["months"]
    assert (march["month"], april["month"]) == ("2025-03", "2025-04")
    assert march["router_cost_usd"] == money_exact(late["cost"])
    assert march["ledger_cost_usd"] == money_exact(late["cost"] + crossing["cost"])
    assert april["router_cost_usd"] == money_exact(early["cost"] + crossing["cost"])
    assert march["unexplained_usd"] == april["unexplained_usd"] == "0"  # the midnight cause explains both

    code, report = reconcile_json(str(tmp_path / "a.json"), "--db", db_url, "--to", "2025-03-31")
    rows = rows_by_key(report)
    assert code == 1 and set(rows) == {("2025-03-31", MINI), ("2025-03-31", SONNET)}
    assert rows[("2025-03-31", SONNET)]["likely_causes"] == [
        "1 ledger call within 5 minutes of midnight UTC (2025-04-01 00:00); 2025-04-01 is outside the range"]


def test_likely_causes_from_the_ledger(db_url, fake_upstream, tmp_path):
    day = away_from_midnight()
    hooked = hooked_client(fake_upstream.base_url, fake_upstream.api_key, db_url)
    with pytest.raises(Exception):
        list(hooked.chat.completions.create(model="fake/cut-stream", messages=MESSAGES, stream=True))
    chat(hooked, "fake/no-usage")  # billed in full; the app never saw the usage
    chat(plain_client(fake_upstream.base_url, fake_upstream.api_key), MINI)  # around spendlog...
    now = datetime.now(timezone.utc)  # ...while the ledger has a dated id for the same model that day
    _seed(db_url, [make_record(created_at=now, model="openai/gpt-4o-mini-2024-07-18")])
    assert len(ledger_rows(db_url, expect=3)) == 3
    (tmp_path / "a.json").write_bytes(activity_json(fake_upstream, day, day))
    code, report = reconcile_json(str(tmp_path / "a.json"), "--db", db_url)
    assert code == 1
    rows = rows_by_key(report)
    cut = rows[(day, "fake/cut-stream")]
    assert cut["status"] == "missing_in_ledger"
    assert cut["likely_causes"] == ["1 ledger error row left out (the router bills none, unless it generated "
                                    "the answer before the failure)"]
    no_usage = rows[(day, "fake/no-usage")]
    assert no_usage["status"] == "count_differs" and no_usage["difference"]["requests"] == 0
    assert no_usage["likely_causes"] == ["1 call without cost in the ledger (cost_source missing)",
                                         "1 call without token counts in the ledger"]
    assert rows[(day, MINI)]["likely_causes"] == [
        "the ledger has 'openai/gpt-4o-mini-2024-07-18' that day, not in the router's activity: the same "
        "model under another id?"]
    assert rows[(day, "openai/gpt-4o-mini-2024-07-18")]["likely_causes"] == [
        "the router bills 'openai/gpt-4o-mini' that day, not in the ledger: the same model under another id?"]
    (month,) = report["months"]
    assert month["unexplained_usd"] == "0" and month["difference_usd"] != "0"
    code, out, _ = reconcile(str(tmp_path / "a.json"), "--db", db_url)
    assert "Likely causes:" in out and f"{day} fake/no-usage: 1 call without cost" in out


def test_records_still_in_the_spool_are_a_likely_cause(db_url, tmp_path):
    at = datetime(2025, 6, 3, 12, 0, tzinfo=timezone.utc)
    _seed(db_url, [make_record(created_at=at, model=GPT4O, cost_usd=Decimal("0.01"))])
    # a record waiting in the spool (no writer runs in this process to replay it)
    spool = spool_path(resolve_url(db_url))
    spool.write_text(spool_line(make_record(created_at=at, model=GPT4O, cost_usd=Decimal("0.01"))))
    try:
        (tmp_path / "a.csv").write_text("date,model,requests,usage,prompt_tokens,completion_tokens\n"
                                        "2025-06-03,openai/gpt-4o,2,0.02,30,166\n")
        code, report = reconcile_json(str(tmp_path / "a.csv"), "--db", db_url)
        (row,) = report["rows"]
        assert (code, row["status"], report["spooled"]) == (1, "count_differs", 1)
        assert row["likely_causes"] == ["1 record spooled, not yet in the database (spendlog db status)"]
        code, out, _ = reconcile(str(tmp_path / "a.csv"), "--db", db_url)
        assert "1 spooled records not yet in the database" in out
    finally:
        spool.unlink(missing_ok=True)


def test_csv_output_file_holds_every_row_and_the_month_totals(sqlite_url, tmp_path):
    at = datetime(2025, 6, 3, 12, 0, tzinfo=timezone.utc)
    _seed(sqlite_url, [make_record(created_at=at, model="=cmd|' /C calc'!A0", cost_usd=Decimal("0.25"))])
    (tmp_path / "a.csv").write_text("date,model,requests,usage,prompt_tokens,completion_tokens\n"
                                    "2025-06-03,openai/gpt-4o-mini,1,0.0000148,15,83\n")
    out = tmp_path / "report.csv"
    code, stdout, err = reconcile(str(tmp_path / "a.csv"), "--db", sqlite_url, "--format", "csv", "-o", str(out))
    assert code == 1 and stdout == "" and "wrote 2 rows" in err
    got = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [r["status"] for r in got] == ["missing_in_router", "missing_in_ledger", "month_total"]
    assert got[0]["model"] == "'=cmd|' /C calc'!A0"  # neutralised for spreadsheets
    assert got[1]["router_cost_usd"] == "0.0000148" and got[1]["ledger_cost_usd"] == ""
    assert got[2]["day"] == "2025-06" and got[2]["cost_usd_diff"] == "-0.2499852"
    assert got[2]["unexplained_usd"] == "-0.2499852"
