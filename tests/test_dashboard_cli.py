"""`spendlog dashboard`: the command it runs, its errors, a real server, and the installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, install_wheel

from spendlog.cli.dashboard import streamlit_command


def test_command_runs_the_packaged_app_with_the_theme(monkeypatch):
    argv, env = streamlit_command(host="127.0.0.1", port=8601, open_browser=False, db_url="sqlite:////x/l.db")
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"]
    app = Path(argv[4])
    assert app.name == "app.py" and app.is_file() and app.parent.name == "dashboard"
    assert {"--server.address=127.0.0.1", "--server.port=8601", "--server.headless=true",
            "--browser.gatherUsageStats=false"} <= set(argv)
    theme = tomllib.loads((app.parent / "config.toml").read_text())["theme"]
    assert f"--theme.primaryColor={theme['primaryColor']}" in argv
    assert env["SPENDLOG_DB_URL"] == "sqlite:////x/l.db"
    argv, env = streamlit_command(host="0.0.0.0", port=1, open_browser=True, db_url=None)
    assert "--server.headless=false" in argv and env.get("SPENDLOG_DB_URL") == os.environ.get("SPENDLOG_DB_URL")


def test_checkout_theme_matches_the_packaged_theme():
    packaged = tomllib.loads((ROOT / "dashboard" / "config.toml").read_text())
    checkout = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert packaged["theme"] == checkout["theme"]


def _spendlog(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spendlog", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_help_documents_every_option():
    out = _spendlog("dashboard", "--help")
    assert out.returncode == 0
    for option in ("--db", "--host", "--port", "--no-browser"):
        assert option in out.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--db", "mysql://u:pw@h/db"], "unsupported database"),
    (["--db", "::nonsense::"], "not a database URL"),
    (["--port", "0"], "--port"),
])
def test_bad_arguments_are_one_line_exit_2(args, needle):
    out = _spendlog("dashboard", "--no-browser", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spendlog: error:") and needle in lines[0]
    assert "pw@" not in out.stderr


def _seed(url: str) -> None:
    from datetime import datetime, timezone
    from decimal import Decimal

    from helpers import make_record

    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import upgrade
    from spendlog.db.store import insert_records

    engine = make_engine(url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime.now(timezone.utc), cost_usd=Decimal("0.5"))])
    engine.dispose()


@pytest.mark.slow
def test_dashboard_serves(tmp_path, sqlite_url, dashboard_factory):
    _seed(sqlite_url)
    url = dashboard_factory(sqlite_url, cwd=tmp_path)
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and b"<html" in r.read().lower()


@pytest.mark.slow
def test_dashboard_runs_from_an_installed_wheel(tmp_path, sqlite_url, dashboard_factory):
    venv = install_wheel(tmp_path)
    py = venv / "bin" / "python"
    _seed(sqlite_url)
    env = {**os.environ, "SPENDLOG_DB_URL": sqlite_url, "PYTHONPATH": ""}
    # the installed app renders the seeded ledger (AppTest inside the fresh venv, far from the checkout)
    script = textwrap.dedent("""
        import json, sys
        from importlib import resources
        from streamlit.testing.v1 import AppTest
        from spendlog.cli.dashboard import streamlit_command
        argv, _env = streamlit_command(host="127.0.0.1", port=1, open_browser=False, db_url=None)
        assert "site-packages" in argv[4], argv[4]
        at = AppTest.from_file(argv[4], default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        print(json.dumps({"app": argv[4], "spend": [m.value for m in at.metric if m.label == "Total spend"]}))
    """)
    run = subprocess.run([str(py), "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(ROOT) not in run.stdout and '"spend": ["$0.50"]' in run.stdout
    # and the installed command starts a server
    dashboard_factory(command=[str(venv / "bin" / "spendlog")], env=env, cwd=tmp_path)
