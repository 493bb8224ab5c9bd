"""`spendlog export` / `summary` with tags: --tag KEY=VALUE (AND), --by tag:KEY, FOCUS Tags, one-line errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner

from helpers import make_record
from spendlog.cli import cli
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records

BASE = datetime(2026, 11, 3, tzinfo=timezone.utc)
HOSTILE = "=HYPERLINK(\"http://evil\")"


@pytest.fixture
def url(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    records = []
    for i in range(240):
        tags = {"feature": ("search", "chat")[i % 2]}
        if i % 3:
            tags["team"] = ("core", HOSTILE)[i % 3 - 1]
        records.append(make_record(created_at=BASE + timedelta(minutes=17 * i), tags=tags,
                                   cost_usd=Decimal(i + 1) / Decimal(10**9)))
    with engine.begin() as conn:
        insert_records(conn, records)
    engine.dispose()
    return db_url


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout_bytes.decode(), result.stderr


def rows(url, *args) -> list[dict]:
    code, out, err = run("export", "--db", url, *args)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out, newline="")))


def test_by_tag_and_day_adds_up_to_the_plain_export_and_neutralises_cells(url):
    grouped = rows(url, "--by", "tag:team,day")
    plain = rows(url, "--by", "day")
    assert sum(Decimal(r["cost_usd"]) for r in grouped) == sum(Decimal(r["cost_usd"]) for r in plain)
    assert {r["tag:team"] for r in grouped} == {"core", "'" + HOSTILE, ""}  # "" = (none) in a CSV cell
    none = sum(int(r["requests"]) for r in grouped if r["tag:team"] == "")
    assert none == 80


def test_tags_filter_and_intersect(url):
    core = rows(url, "--by", "day", "--tag", "team=core")
    both = rows(url, "--by", "day", "--tag", "team=core", "--tag", "feature=search")
    hostile = rows(url, "--by", "day", "--tag", f"team={HOSTILE}")
    assert sum(int(r["requests"]) for r in core) == 80
    assert sum(int(r["requests"]) for r in both) == 40  # i % 3 == 1 and i even: i % 6 == 4
    assert sum(int(r["requests"]) for r in hostile) == 80
    calls = rows(url, "--by", "call", "--tag", "team=core", "--tag", "feature=search")
    assert len(calls) == 40 and all(json.loads(c["tags"]) == {"feature": "search", "team": "core"} for c in calls)


def test_focus_puts_tag_groups_in_tags(url):
    focus = rows(url, "--by", "day,tag:team", "--format", "focus")
    tags = {r["Tags"] for r in focus}
    assert {json.dumps({"team": "core"}, separators=(",", ":")), ""} <= tags
    assert any(json.loads(t or "{}").get("team") == HOSTILE for t in tags)


def test_summary_by_tag_with_a_tag_filter(url):
    code, out, err = run("summary", "--db", url, "--by", "tag:team", "--tag", "feature=chat")
    assert code == 0, err
    assert "By tag:team" in out and "(none)" in out and "Requests      120" in out


@pytest.mark.parametrize("args, message", [
    (("export", "--tag", "team"), "--tag 'team' is not KEY=VALUE"),
    (("export", "--tag", "=core"), "is not KEY=VALUE"),
    (("summary", "--tag", "team="), "is not KEY=VALUE"),
    (("export", "--tag", "k=" + "v" * 300), "longer than a stored tag"),
    (("export", "--by", "tag:"), "--by tag: needs a key"),
    (("summary", "--by", "tag:" + "k" * 65), "longer than 64 characters"),
    (("export", "--by", "tag:team,tag:team"), "lists a group twice"),
])
def test_bad_tag_input_is_one_line_exit_2(url, args, message):
    code, out, err = run(args[0], "--db", url, *args[1:])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
