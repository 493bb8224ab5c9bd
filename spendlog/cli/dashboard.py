"""`spendlog dashboard`: run the Streamlit dashboard on the ledger.

It starts ``python -m streamlit run <installed spendlog/dashboard/app.py>`` with the packaged theme
(``dashboard/config.toml`` as ``--theme.*`` options) and the database URL in ``SPENDLOG_DB_URL``,
so it works the same from a wheel as from a checkout.
"""

from __future__ import annotations

import os
import sys
import tomllib
from importlib import resources
from pathlib import Path

import click

from ._common import db_option, fail

__all__ = ["dashboard_cmd", "streamlit_command"]


def _package_file(name: str) -> Path:
    return Path(str(resources.files("spendlog.dashboard").joinpath(name)))


def _theme_options() -> list[str]:
    try:
        config = tomllib.loads(_package_file("config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    args = []
    for section, values in config.items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args.append(f"--{section}.{key}={text}")
    return args


def streamlit_command(*, host: str, port: int, open_browser: bool, db_url: str | None) -> tuple[list[str], dict]:
    """The argv and environment that run the dashboard (separate from the exec, for tests)."""
    argv = [
        sys.executable, "-m", "streamlit", "run", str(_package_file("app.py")),
        f"--server.address={host}",
        f"--server.port={port}",
        f"--server.headless={'false' if open_browser else 'true'}",
        "--server.runOnSave=false",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=minimal",
        *_theme_options(),
    ]
    env = dict(os.environ)
    if db_url:
        env["SPENDLOG_DB_URL"] = db_url
    return argv, env


@click.command("dashboard")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (keep 127.0.0.1 unless others should see your spend).")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser window (for servers and scripts).")
def dashboard_cmd(db_url: str | None, host: str, port: int, no_browser: bool) -> None:
    """Open the spend dashboard in the browser."""
    from spendlog.db.engine import mask_url, resolve_url

    resolved = resolve_url(db_url)  # a bad URL ends here with one line and exit code 2
    if not _package_file("app.py").is_file():
        fail("the dashboard files are missing from this installation; reinstall spendlog")
    argv, env = streamlit_command(host=host, port=port, open_browser=not no_browser, db_url=db_url)
    click.echo(f"spendlog dashboard: http://{host}:{port}  (database {mask_url(resolved)}; Ctrl+C stops)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
