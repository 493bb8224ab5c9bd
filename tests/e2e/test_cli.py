"""The CLI documents itself and answers mistakes with one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from spendlog.cli import cli


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, prefix + (name,))


ALL = list(_all_commands(cli))


def test_the_cli_has_the_commands_users_are_promised():
    names = {" ".join(path) for path, _ in ALL}
    assert {"db", "db upgrade", "db status", "db rebuild-rollups", "fake-upstream", "proxy", "dashboard",
            "export", "summary", "demo", "reconcile"} <= names


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_and_option_has_help(path, command):
    short = command.get_short_help_str(limit=200)
    assert short and not short.endswith("..."), f"{' '.join(path)} needs a one-line help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"


def spendlog(*args, env=None):
    return subprocess.run([sys.executable, "-m", "spendlog", *args], capture_output=True, text=True, timeout=60, env=env)


def test_python_dash_m_spendlog_shows_help():
    result = spendlog("--help")
    assert result.returncode == 0
    for name in ("export", "proxy", "dashboard", "db"):
        assert name in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["db", "status", "--db", "mysql://x@y/z"],
        ["db", "status", "--db", "::not a url::"],
        ["db", "status", "--db", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"],
        ["db", "upgrade", "--bogus-option"],
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(args):
    result = spendlog(*args)
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spendlog: error:"), result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_db_status_on_a_new_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert spendlog("db", "upgrade", "--db", url).returncode == 0
    result = spendlog("db", "status", "--db", url)
    assert result.returncode == 0, result.stderr
    from spendlog.db.migrate import head_revision

    assert f"revision:  {head_revision()} (the newest)" in result.stdout and "rows:      0" in result.stdout


def test_db_rebuild_rollups_rebuilds_the_daily_rollups_too(tmp_path):
    """`db rebuild-rollups` on a ledger whose daily rollup went wrong: the hourly, tag and daily
    tables come back to what the writer made, and `db status` still reads the ledger."""
    from datetime import datetime, timedelta, timezone

    from helpers import make_record
    from sqlalchemy import select, text

    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import upgrade
    from spendlog.db.models import RollupDaily, RollupHourly, RollupTagDays, RollupTags, RollupTagsDaily
    from spendlog.db.store import insert_records

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url, pool=False)
    upgrade(engine)
    start = datetime(2026, 10, 30, 22, tzinfo=timezone.utc)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=start + timedelta(minutes=41 * i)) for i in range(200)])

    def snapshot():
        with engine.connect() as conn:
            return [sorted(tuple(r) for r in conn.execute(select(m.__table__)))
                    for m in (RollupHourly, RollupDaily, RollupTags, RollupTagsDaily, RollupTagDays)]

    before = snapshot()
    assert len(before[1]) >= 6 and len(before[3]) >= 6 and len(before[4]) >= 6  # six UTC days
    with engine.begin() as conn:
        conn.execute(text("UPDATE rollup_daily SET requests = requests + 1"))
        conn.execute(text("DELETE FROM rollup_tags_daily"))
        conn.execute(text("UPDATE rollup_tag_days SET cost_usd = 0"))
    assert snapshot() != before
    result = spendlog("db", "rebuild-rollups", "--db", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rebuilt rollups from 200 calls"
    assert snapshot() == before
    engine.dispose()
    assert "rows:      200" in spendlog("db", "status", "--db", url).stdout
