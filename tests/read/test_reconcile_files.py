"""Activity files for `spendlog reconcile`: the shapes it reads (JSON, CSV, --columns, stdin) and
every malformed input answered with one line naming the row and the field, exit 2."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from helpers import make_record
from reconcile_helpers import reconcile, reconcile_json, rows_by_key

from spendlog.db.activity import ActivityError, parse_columns, read_activity
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.reconcile_causes import near_names
from spendlog.db.store import insert_records

HEADER = "date,model,requests,usage,prompt_tokens,completion_tokens"
ROW = "2025-06-03,openai/gpt-4o-mini,1,0.0000148,15,83"


@pytest.fixture
def ledger(sqlite_url):
    """One call of openai/gpt-4o-mini on 2025-06-03 at 20:00 UTC (15 + 83 tokens, $0.0000148)."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime(2025, 6, 3, 20, 0, tzinfo=timezone.utc))])
    engine.dispose()
    return sqlite_url


def _write(tmp_path, text: str | bytes, name: str = "activity.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _item(**over) -> dict:
    item = {"date": "2025-06-03", "model": "openai/gpt-4o-mini", "requests": 1, "usage": "USAGE",
            "prompt_tokens": 15, "completion_tokens": 83, "reasoning_tokens": 0}
    item.update(over)
    return item


def _json_doc(*items, usage: str = "0.0000148") -> str:
    """JSON text with `usage` written as the number literal given (json.dumps would go via float)."""
    return json.dumps({"data": list(items)}).replace('"USAGE"', usage)


# -- the shapes that are read ---------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"{HEADER}\n{ROW}\n",
    f"\ufeff{HEADER}\r\n{ROW}\r\n\r\n",  # a spreadsheet's BOM and CRLF, a trailing blank line
    f"{HEADER},reasoning_tokens,provider_name,byok_usage_inference,model_permaslug,endpoint_id\n"
    f"{ROW},0,OpenAI,0,openai/gpt-4o-mini-2024-07-18,e1\n",
    f"{HEADER},provider_name\n2025-06-03,openai/gpt-4o-mini,1,0.0000100,10,50,OpenAI\n"
    "2025-06-03,openai/gpt-4o-mini,0,0.0000048,5,33,Azure\n",  # one row per provider: summed
    f"{HEADER}\n2025-06-03T21:30:00-01:00,openai/gpt-4o-mini,1,1.48e-05,15,83\n",  # an instant: its UTC day
    _json_doc(_item()),
    _json_doc(_item(), usage="1.48E-5"),
    json.dumps([_item(usage="0.0000148", requests="1", prompt_tokens=15.0)]),  # numbers as text, 15.0
    json.dumps({"object": "list", "data": [_item(usage="0.0000148")], "meta": {"x": [1, 2]}}),
])
def test_the_shapes_that_match_the_ledger(ledger, tmp_path, text):
    code, doc = reconcile_json(_write(tmp_path, text), "--db", ledger)
    (row,) = doc["rows"]
    assert (code, row["status"], row["day"]) == (0, "match", "2025-06-03")
    assert row["router"] == {"requests": 1, "prompt_tokens": 15, "completion_tokens": 83, "cost_usd": "0.0000148"}


def test_columns_map_another_exports_headers(ledger, tmp_path):
    path = _write(tmp_path, "Day,Model,Calls,Total Cost,In,Out\n2025-06-03,openai/gpt-4o-mini,1,0.0000148,15,83\n")
    columns = "date=Day,model=Model,requests=Calls,cost=Total Cost,prompt_tokens=In,completion_tokens=Out"
    code, out, err = reconcile(path, "--db", ledger, "--columns", columns)
    assert (code, err) == (0, "") and "All 1 day x model rows match" in out
    assert parse_columns(columns)["usage"] == "Total Cost"
    path = _write(tmp_path, json.dumps([{"Day": "2025-06-03", "Model": "openai/gpt-4o-mini", "Calls": 1,
                                         "Total Cost": "0.0000148", "In": 15, "Out": 83}]), "other.json")
    assert reconcile(path, "--db", ledger, "--columns", columns)[0] == 0


def test_stdin_and_the_range(ledger, tmp_path, monkeypatch):
    text = f"{HEADER}\n{ROW}\n2025-06-09,openai/gpt-4o,1,1,1,1\n"
    from click.testing import CliRunner

    from spendlog.cli import cli

    result = CliRunner().invoke(cli, ["reconcile", "-", "--db", ledger, "--to", "2025-06-05"], input=text)
    assert result.exit_code == 0, result.output  # the 06-09 row is outside --to
    assert result.stderr == "note: 1 activity rows outside 2025-06-03 .. 2025-06-05 left out\n"
    code, doc = reconcile_json(_write(tmp_path, text), "--db", ledger)
    assert code == 1 and (doc["first"], doc["last"]) == ("2025-06-03", "2025-06-09")
    assert rows_by_key(doc)[("2025-06-09", "openai/gpt-4o")]["status"] == "missing_in_ledger"


def test_days_are_utc_whatever_spendlog_tz_says(ledger, tmp_path):
    # 20:00 UTC on 06-03 is 01:30 on 06-04 in Kolkata: the router's day is the UTC one
    code, doc = reconcile_json(_write(tmp_path, f"{HEADER}\n{ROW}\n"), "--db", ledger, env={"SPENDLOG_TZ": "Asia/Kolkata"})
    assert code == 0 and rows_by_key(doc)[("2025-06-03", "openai/gpt-4o-mini")]["status"] == "match"
    code, out, _ = reconcile("--help")
    assert "whatever SPENDLOG_TZ says" in " ".join(out.split())


def test_an_empty_activity_needs_a_range(ledger, tmp_path):
    path = _write(tmp_path, f"{HEADER}\n")
    code, _, err = reconcile(path, "--db", ledger)
    assert code == 2 and "no activity rows" in err and len(err.splitlines()) == 1
    code, doc = reconcile_json(path, "--db", ledger, "--from", "2025-06-01", "--to", "2025-06-30")
    assert code == 1 and [r["status"] for r in doc["rows"]] == ["missing_in_router"]


def test_differences_are_exact_to_the_last_digit(ledger, tmp_path):
    text = f"{HEADER}\n2025-06-03,openai/gpt-4o-mini,1,0.00001480000000000000000000000000001,15,83\n"
    code, doc = reconcile_json(_write(tmp_path, text), "--db", ledger)
    (row,) = doc["rows"]
    assert (code, row["status"]) == (1, "cost_differs")
    assert row["difference"]["cost_usd"] == "0.00000000000000000000000000000000001"
    assert doc["months"][0]["router_cost_usd"] == "0.00001480000000000000000000000000001"
    code, doc = reconcile_json(_write(tmp_path, text), "--db", ledger, "--tolerance", "0.000000000001")
    assert (code, doc["rows"][0]["status"]) == (0, "match")


def test_byok_and_near_names_are_named(ledger, tmp_path):
    text = (f"{HEADER},byok_usage_inference\n2025-06-03,openai/gpt-4o-mini,1,0.00001,15,83,0.0000048\n")
    code, doc = reconcile_json(_write(tmp_path, text), "--db", ledger)
    (row,) = doc["rows"]
    assert (code, row["status"]) == (1, "cost_differs")
    assert row["likely_causes"] == ["the router reports BYOK inference (byok_usage_inference), billed by your "
                                    "provider, not in usage"]
    assert near_names("openai/gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini")
    assert near_names("anthropic/claude-3.5-sonnet", "anthropic/claude-3-5-sonnet-20241022")
    assert near_names("meta-llama/llama-3.1-8b-instruct:free", "meta-llama/llama-3.1-8b-instruct")
    assert not near_names("openai/gpt-4o", "openai/gpt-4o-mini")
    assert not near_names("openai/gpt-4o", "openai/gpt-4o")


# -- malformed input: one line, exit 2 ------------------------------------------------------------

BAD_FILES = [
    (f"{HEADER}\n2025-13-01,m,1,0.1,1,1\n", "line 2: date: '2025-13-01' is no such day"),
    (f"{HEADER}\n{ROW}\n06/03/2025,m,1,0.1,1,1\n", "line 3: date: '06/03/2025' is not a date: use YYYY-MM-DD"),
    (f"{HEADER}\n2025-06-03T10:00:00,m,1,0.1,1,1\n", "line 2: date: '2025-06-03T10:00:00' has no zone"),
    (f"{HEADER}\n2025-06-03,m,1,abc,1,1\n", "line 2: usage: 'abc' is not an amount in USD"),
    (f"{HEADER}\n2025-06-03,m,1,$0.10,1,1\n", "line 2: usage: '$0.10' is not an amount"),
    (f"{HEADER}\n2025-06-03,m,1,NaN,1,1\n", "line 2: usage: 'NaN' is not an amount"),
    (f"{HEADER}\n2025-06-03,m,1,Infinity,1,1\n", "line 2: usage: 'Infinity' is not an amount"),
    (f"{HEADER}\n2025-06-03,m,1,-0.10,1,1\n", "line 2: usage: '-0.10' is negative"),
    (f"{HEADER}\n2025-06-03,m,1,1e999,1,1\n", "line 2: usage: '1e999' is out of range"),
    (f"{HEADER}\n2025-06-03,m,1,1e-99,1,1\n", "line 2: usage: '1e-99' is out of range"),
    (f"{HEADER}\n2025-06-03,m,1,0.1,1.5,1\n", "line 2: prompt_tokens: '1.5' is not a whole number"),
    (f"{HEADER}\n2025-06-03,m,-1,0.1,1,1\n", "line 2: requests: '-1' is not a whole number"),
    (f"{HEADER}\n2025-06-03,m,1,,1,1\n", "line 2: usage is empty"),
    (f"{HEADER}\n2025-06-03, ,1,0.1,1,1\n", "line 2: model is empty"),
    (f"{HEADER}\n2025-06-03,m,1,0.1,1\n", "line 2: 5 cells, the header has 6"),
    ("date,model,requests,prompt_tokens,completion_tokens\n2025-06-03,m,1,1,1\n",
     "line 1: the header has no 'usage' column (map another header with --columns usage=NAME)"),
    (f"{HEADER},usage\n", "line 1: the header has 'usage' twice"),
    (b"date,model,requests,usage,prompt_tokens,completion_tokens\n2025-06-03,m\xe9,1,0.1,1,1\n",
     "line 2: not UTF-8 text"),
    ("", "the file is empty"),
    (f"{HEADER}\n{ROW}\n2025-06-03,{'m' * (1 << 20)},1,0.1,1,1\n", "line 3: longer than 1,048,576 bytes"),
    (_json_doc(_item(), usage="0.1")[:-30], "the JSON ends early"),
    (_json_doc(_item(), _item(date="2025-6-3"), usage="0.1"), "data[1]: date: '2025-6-3' is not a date"),
    (_json_doc(_item(usage="abc")), "data[0]: usage: 'abc' is not an amount"),
    (_json_doc(_item(), usage="NaN"), "data[0] (line 1, column 11): refused NaN"),
    (_json_doc(_item(), usage="-Infinity"), "refused -Infinity"),
    (_json_doc(_item(), usage="1" + "0" * 80), "refused a number of 81 characters"),
    (_json_doc(_item(requests=True), usage="0.1"), "data[0]: requests: True is not a whole number"),
    (_json_doc(_item(requests=None), usage="0.1"), "data[0]: requests is empty"),
    (json.dumps({"data": [{"date": "2025-06-03", "model": "m", "requests": 1, "prompt_tokens": 1,
                           "completion_tokens": 1}]}), "data[0]: usage is missing"),
    (json.dumps({"data": [[1, 2]]}), "data[0]: expected an object, found list"),
    (json.dumps({"rows": []}), "the JSON object has no 'data' array"),
    ('{"data": [] } trailing', "unexpected data after the JSON document"),
    ('[{"date": "2025-06-03",, "model": "m"}]', "item [0] (line 1, column 24): Expecting property name"),
]


@pytest.mark.parametrize("text,needle", BAD_FILES, ids=[n[:40] for _, n in BAD_FILES])
def test_malformed_files_give_one_line_naming_the_row_and_the_field(ledger, tmp_path, text, needle):
    suffix = "json" if text[:1] in ("{", "[") else "csv"
    code, out, err = reconcile(_write(tmp_path, text, f"activity.{suffix}"), "--db", ledger)
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and err.startswith("spendlog: error: ")
    assert needle in err


BAD_ARGS = [
    (["--from", "2025-02-30"], "--from '2025-02-30' is not a date"),
    (["--to", "tomorrow"], "--to 'tomorrow' is not a date"),
    (["--from", "2025-06-05", "--to", "2025-06-01"], "--from 2025-06-05 is after --to 2025-06-01"),
    (["--from", "2025-06-05"], "activity.csv has no activity rows on or after 2025-06-05: give --from and --to"),
    (["--tolerance", "abc"], "--tolerance 'abc' is not an amount"),
    (["--tolerance", "-0.01"], "--tolerance '-0.01' is not an amount"),
    (["--columns", "price=Total"], "--columns 'price' is not a field: choose from date, model"),
    (["--columns", "cost"], "--columns 'cost': write ours=theirs"),
    (["--columns", "cost=Total Cost"], "--columns usage=Total Cost: no column 'Total Cost' in the header"),
    (["--upstream", "http://127.0.0.1:9/v1"], "--upstream goes with --from-upstream"),
    (["--format", "xml"], "Invalid value for '--format'"),
    (["--db", "mysql://x@y/z"], "unsupported database"),
]


@pytest.mark.parametrize("args,needle", BAD_ARGS, ids=[a[0] + " " + a[1] if len(a) > 1 else a[0] for a, _ in BAD_ARGS])
def test_bad_arguments_give_one_line_and_exit_2(ledger, tmp_path, args, needle):
    code, out, err = reconcile(_write(tmp_path, f"{HEADER}\n{ROW}\n"), "--db", ledger, *args)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1, err
    assert needle in err


@pytest.mark.parametrize("args,needle", [
    ([], "give an activity FILE or --from-upstream"),
    (["a.csv", "--from-upstream"], "give an activity FILE or --from-upstream"),
    (["--from-upstream", "--columns", "cost=x"], "--columns maps a file's columns"),
    (["no-such-file.csv"], "cannot read 'no-such-file.csv': No such file or directory"),
])
def test_which_activity_is_checked_first(ledger, args, needle, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = reconcile(*args, "--db", ledger)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and needle in err, err


def test_read_activity_sums_exactly():
    import io

    rows = "".join(f"2025-06-03,m,1,0.000000000001,1,1,P{i % 3}\n" for i in range(3000))
    activity = read_activity(io.BytesIO(f"{HEADER},provider_name\n{rows}".encode()), name="f")
    (figures,) = activity.sums.values()
    assert (figures.requests, figures.rows, figures.usage) == (3000, 3000, Decimal("0.000000003"))
    with pytest.raises(ActivityError, match="--columns maps 'usage' twice"):
        parse_columns("cost=a,usage=b")
