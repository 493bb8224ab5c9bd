"""`spendlog summary`: the terminal table shows the read layer's totals."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner

from spendlog.cli import cli
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.report.money import money_display, money_exact
from test_queries import make_record, seed

UTC = timezone.utc


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["summary", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ledger(db_url):
    records = [
        make_record(datetime(2024, 5, 1, 10, tzinfo=UTC), model="openai/gpt-4o", app="billing",
                    cost_usd=Decimal("1234.5"), prompt_tokens=1000, completion_tokens=200),
        make_record(datetime(2024, 5, 1, 23, 30, tzinfo=UTC), model="openai/gpt-4o-mini", app="billing",
                    cost_usd=Decimal("0.000148"), prompt_tokens=10, completion_tokens=5),
        make_record(datetime(2024, 5, 2, 9, tzinfo=UTC), model="anthropic/claude-3.5-sonnet", app="search",
                    cost_usd=Decimal("0.25"), prompt_tokens=50, completion_tokens=50),
        make_record(datetime(2024, 5, 2, 9, 5, tzinfo=UTC), model="anthropic/claude-3.5-sonnet", app=None,
                    status_code=500, cost_usd=None, cost_source="missing", prompt_tokens=None,
                    completion_tokens=None),
    ]
    seed(db_url, records).dispose()
    return db_url


def table_rows(out: str, title: str) -> dict[str, list[str]]:
    """The rows of the table under ``title`` as {label: cells}."""
    block = out.split(title + "\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return {re.split(r"\s{2,}", line.strip())[0]: re.split(r"\s{2,}", line.strip())[1:] for line in block[2:]}


def test_totals_per_model_and_per_app(ledger):
    code, out, err = run("--db", ledger)
    assert code == 0, err
    assert "Total spend   $1,234.75   (exact: 1234.750148 USD)" in out
    assert "Requests      4   errors 1 (25.0%)   without cost 1" in out
    assert "Tokens        1,060 prompt, 255 completion" in out
    models = table_rows(out, "By model")
    assert list(models) == ["openai/gpt-4o", "anthropic/claude-3.5-sonnet", "openai/gpt-4o-mini"]  # by spend
    assert models["openai/gpt-4o"] == ["1", "1,000", "200", "$1,234.50", "100.0%"]
    assert models["anthropic/claude-3.5-sonnet"][:1] == ["2"] and models["anthropic/claude-3.5-sonnet"][3] == "$0.25"
    assert models["openai/gpt-4o-mini"][3] == "$0.000148"  # small sums stay visible
    apps = table_rows(out, "By app")
    assert apps["billing"][0] == "2" and apps["billing"][3] == "$1,234.50"
    assert apps["(none)"][0] == "1" and apps["(none)"][3] == "$0.00"
    # columns are aligned: every line of a table has its spend column ending at the same place
    block = out.split("By model\n", 1)[1].split("\n\n", 1)[0].splitlines()
    ends = {line.index("%") for line in block[2:]}
    assert len(ends) == 1


def test_range_and_timezone(ledger):
    code, out, _ = run("--db", ledger, "--from", "2024-05-02", "--to", "2024-05-02", "--tz", "Asia/Tokyo", "--by",
                       "day,model")
    assert code == 0
    # in Tokyo, May 2 holds the 23:30 UTC call of May 1 and the 09:00 UTC calls of May 2
    assert "Requests      3   errors 1" in out
    assert "Total spend   $0.25   (exact: 0.250148 USD)" in out
    days = table_rows(out, "By day")
    assert list(days) == ["2024-05-02"]
    code, out, _ = run("--db", ledger, "--from", "2024-05-01", "--to", "2024-05-01")
    assert "Requests      2" in out and "(exact: 1234.500148 USD)" in out


def test_empty_ledger(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    code, out, err = run("--db", sqlite_url)
    assert code == 0, err
    assert "Total spend   $0.00   (exact: 0 USD)" in out
    assert "By model: no calls" in out and "By app: no calls" in out
    assert out.splitlines()[0] == "spendlog summary, no calls (UTC)"


def test_the_header_names_the_real_dates_of_the_range(ledger):
    """Open sides read as the local dates of the first and the last matching call, not as words."""
    def header(*args: str) -> str:
        code, out, err = run("--db", ledger, *args)
        assert code == 0, err
        return out.splitlines()[0]

    assert header() == "spendlog summary, 2024-05-01 .. 2024-05-02 (UTC)"
    # +14: the first call (10:00 UTC on May 1) is already May 2 there
    assert header("--tz", "Pacific/Kiritimati") == "spendlog summary, 2024-05-02 .. 2024-05-02 (Pacific/Kiritimati)"
    assert header("--from", "2024-04-01") == "spendlog summary, 2024-04-01 .. 2024-05-02 (UTC)"
    assert header("--to", "2024-05-01") == "spendlog summary, 2024-05-01 .. 2024-05-01 (UTC)"
    assert header("--from", "2024-04-01", "--to", "2024-04-30") == "spendlog summary, 2024-04-01 .. 2024-04-30 (UTC)"


def test_hostile_names_cannot_drive_the_terminal(sqlite_url):
    seed(sqlite_url, [make_record(datetime(2024, 5, 1, tzinfo=UTC), model="evil\x1b[2J\x07model")]).dispose()
    code, out, _ = run("--db", sqlite_url)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "evil?[2J?model" in out


@pytest.mark.parametrize("args,needle", [
    (["--by", "call"], "call"),
    (["--by", "colour"], "colour"),
    (["--from", "2024-5-1"], "YYYY-MM-DD"),
    (["--from", "2024-05-02", "--to", "2024-05-01"], "before"),
    (["--tz", "Nowhere/Town"], "timezone"),
])
def test_bad_arguments(ledger, args, needle):
    code, out, err = run("--db", ledger, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("spendlog: error: ") and needle in err


def test_summary_money_text():
    assert money_display(Decimal("1234.5")) == "$1,234.50"
    assert money_display(Decimal("1234567.891")) == "$1,234,567.89"
    assert money_display(Decimal("0")) == "$0.00"
    assert money_display(Decimal("0.5")) == "$0.50"
    assert money_display(Decimal("0.000148")) == "$0.000148"
    assert money_display(Decimal("0.00014825")) == "$0.000148"
    assert money_display(Decimal("0.0990")) == "$0.099"
    assert money_display(Decimal("0.09999")) == "$0.10"
    assert money_display(Decimal("0.000000000001")) == "$0.000000000001"
    assert money_display(Decimal("-2.5")) == "-$2.50"


def test_the_total_says_what_is_billed_estimated_and_unpriced(ledger):
    """An unbilled call to a priced model is estimated by the store: the total is labelled as holding
    an estimate, and the split line shows bills, estimates, unpriced calls and the list price."""
    from spendlog.db.estimate import price_book, price_record

    unbilled = make_record(datetime(2024, 5, 2, 10, tzinfo=UTC), model="openai/gpt-4o-mini", cost_usd=None,
                           cost_source="missing", prompt_tokens=2_000_000, completion_tokens=1_000_000)
    estimate = price_record(price_book(), dict(unbilled))["cost_usd"]
    assert estimate > 0
    engine = make_engine(ledger)
    from spendlog.db.store import insert_records
    with engine.begin() as conn:
        insert_records(conn, [unbilled])
    engine.dispose()
    code, out, err = run("--db", ledger)
    assert code == 0, err
    total = Decimal("1234.750148") + estimate
    assert f"Total spend   {money_display(total)}   (exact: {money_exact(total)} USD)   incl. {money_display(estimate)} estimated" in out
    line = next(x for x in out.splitlines() if x.startswith("Priced"))
    assert line.startswith(f"Priced        billed $1,234.75, estimated {money_display(estimate)}, unpriced 1 calls")
    assert "list price $" in line


def test_a_total_of_bills_only_has_no_estimate_label(ledger):
    code, out, _ = run("--db", ledger)
    assert "estimated" not in out.splitlines()[2]
    assert "Priced        billed $1,234.75, estimated $0.00, unpriced 1 calls" in out
