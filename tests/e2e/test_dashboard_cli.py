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

from spendlog.cli.dashboard import dashboard_url, streamlit_command


def test_command_runs_the_packaged_app_with_the_theme(monkeypatch):
    argv, env = streamlit_command(host="127.0.0.1", port=8601, db_url="sqlite:////x/l.db")
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"]
    app = Path(argv[4])
    assert app.name == "app.py" and app.is_file() and app.parent.name == "dashboard"
    assert {"--server.address=127.0.0.1", "--server.port=8601", "--server.headless=true",
            "--browser.gatherUsageStats=false"} <= set(argv)
    theme = tomllib.loads((app.parent / "config.toml").read_text())["theme"]
    assert f"--theme.primaryColor={theme['primaryColor']}" in argv
    assert env["SPENDLOG_DB_URL"] == "sqlite:////x/l.db"
    argv, env = streamlit_command(host="0.0.0.0", port=1, db_url=None)
    assert env.get("SPENDLOG_DB_URL") == os.environ.get("SPENDLOG_DB_URL")


def test_the_checkout_config_is_on_the_command_line():
    """Everything the checkout's .streamlit/config.toml sets (usage statistics off, headless, the
    theme) is passed on the command line too, so the installed command needs no config file."""
    argv, _env = streamlit_command(host="127.0.0.1", port=8601, db_url=None)
    checkout = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    for section, values in checkout.items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            assert f"--{section}.{key}={text}" in argv
    assert "--server.headless=true" in argv and "--browser.gatherUsageStats=false" in argv


def test_dashboard_url_reaches_a_wildcard_address_on_loopback():
    assert dashboard_url("127.0.0.1", 8501) == "http://127.0.0.1:8501/"
    assert dashboard_url("0.0.0.0", 8501) == "http://127.0.0.1:8501/"
    assert dashboard_url("::", 8501) == "http://[::1]:8501/"


def test_a_port_a_stopped_server_left_in_time_wait_is_free():
    """Restarting the dashboard right after Ctrl+C: its closed connections linger in TIME_WAIT."""
    import socket

    from spendlog.cli.dashboard import port_free

    with socket.socket() as server:  # a server as Streamlit's sets it up (SO_REUSEADDR)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: it is the side left in TIME_WAIT
            client.recv(1)
    assert port_free("127.0.0.1", port)


def test_a_port_in_use_is_one_line_exit_2():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _spendlog("dashboard", "--port", str(port), env={"BROWSER": "/bin/false"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"spendlog: error: port {port} on 127.0.0.1 is in use; "
                                               "pass --port with a free one"]


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
        from spendlog.cli.dashboard import dashboard_url, streamlit_command
        argv, _env = streamlit_command(host="127.0.0.1", port=1, db_url=None)
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


def _read_all(fd: int, into: list[bytes]) -> None:
    """Collect what the child writes to its terminal until the terminal closes."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


@pytest.mark.slow
def test_first_run_never_prompts_and_opens_the_browser_itself(tmp_path, sqlite_url):
    """A new user's machine: no ~/.streamlit/, a terminal on stdin, run from a folder of their own."""
    import pty
    import threading
    import time

    from fixture_dashboard import free_port

    _seed(sqlite_url)
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "record-browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
    browser.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_") and k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(home), BROWSER=str(browser), SPENDLOG_DB_URL=sqlite_url)
    port = free_port()
    main, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "spendlog", "dashboard", "--port", str(port)], stdin=terminal,
                            stdout=terminal, stderr=terminal, env=env, cwd=cwd, start_new_session=True)
    os.close(terminal)
    output: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(main, output), daemon=True)
    reader.start()
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and status is None and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.2)
        while time.monotonic() < deadline and not opened.exists():
            time.sleep(0.1)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0") if proc.poll() is None else []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        reader.join(timeout=5)
        os.close(main)
    text = b"".join(output).decode("utf-8", "replace")
    assert status == 200, text[-2000:]
    assert "email" not in text.lower() and "Collecting usage statistics" not in text, text[-2000:]
    assert not (home / ".streamlit" / "credentials.toml").exists()
    assert opened.read_text().splitlines() == [f"http://127.0.0.1:{port}/"]
    assert {b"--server.headless=true", b"--browser.gatherUsageStats=false"} <= set(cmdline)


def test_spendlog_alone_prints_its_help_without_an_error():
    out = _spendlog()
    assert out.returncode == 0 and "error" not in out.stderr.lower() and out.stderr == ""
    assert out.stdout.startswith("Usage: spendlog") and "Commands:" in out.stdout


def test_the_command_list_shows_each_whole_first_line():
    from spendlog.cli import cli

    out = _spendlog("--help")
    listed = " ".join(out.stdout.split())  # the list wraps its long lines
    for name, command in cli.commands.items():
        first = command.help.strip().splitlines()[0].strip()
        assert f"{name} {first}" in listed, name
    assert "..." not in out.stdout.split("Commands:", 1)[1]


def test_db_status_says_the_revision_is_the_newest(tmp_path):
    from spendlog.db.migrate import head_revision

    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert _spendlog("db", "upgrade", "--db", url).returncode == 0
    out = _spendlog("db", "status", "--db", url)
    assert f"revision:  {head_revision()} (the newest)" in out.stdout.splitlines()
