"""`spendlog dashboard`: run the Streamlit dashboard on the ledger.

It starts ``python -m streamlit run <installed spendlog/dashboard/app.py>`` with the packaged theme
(``dashboard/config.toml`` as ``--theme.*`` options) and the database URL in ``SPENDLOG_DB_URL``,
so it works the same from a wheel as from a checkout, from any folder.

Streamlit always runs headless: a non-headless first run stops at Streamlit's "Email:" prompt
until someone answers it. The browser is opened by us, with Python's ``webbrowser``, once the
server answers (where there is no ``os.fork``, as on Windows, the URL is only printed). Usage
statistics are always off (``browser.gatherUsageStats=false`` on the command line, which no
config file overrides).

Who may open it: without an ``[auth]`` section in the secrets file (docs/auth.md) the dashboard
has no sign-in, so it listens on a loopback address only; another ``--host`` then needs
``--allow-anonymous``. With ``[auth]`` the address printed (and opened) is the origin of its
``redirect_uri``, the only one Streamlit's sign-in cookie works on.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
import tomllib
import urllib.request
import webbrowser
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import click

from spendlog.db.errors import first_line
from spendlog.db.hosts import is_loopback

from ._common import db_option, fail

__all__ = ["dashboard_cmd", "streamlit_command", "dashboard_url", "port_free", "open_when_ready", "OPEN_TIMEOUT",
           "secrets_auth", "is_loopback"]

OPEN_TIMEOUT = 60.0  # seconds the browser waits for the server's first answer (a cold Streamlit import is slow)
# What `streamlit run` always gets, whatever config files the user or the folder hold
FIXED_OPTIONS = (
    "--server.headless=true",
    "--server.runOnSave=false",
    "--server.fileWatcherType=none",
    "--browser.gatherUsageStats=false",
    "--client.toolbarMode=minimal",
)


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


def streamlit_command(*, host: str, port: int, db_url: str | None,
                      secrets: Path | None = None) -> tuple[list[str], dict]:
    """The argv and environment that run the dashboard (separate from the exec, for tests).
    ``secrets`` replaces Streamlit's secrets locations (its ``secrets.files`` option)."""
    argv = [
        sys.executable, "-m", "streamlit", "run", str(_package_file("app.py")),
        f"--server.address={host}",
        f"--server.port={port}",
        *FIXED_OPTIONS,
        *_theme_options(),
    ]
    if secrets is not None:
        argv.append(f"--secrets.files={secrets}")
    env = dict(os.environ)
    if db_url:
        env["SPENDLOG_DB_URL"] = db_url
    return argv, env


def dashboard_url(host: str, port: int) -> str:
    """The page's address from this machine (a wildcard address is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _secrets_files(secrets: Path | None) -> list[Path]:
    """Where Streamlit will read secrets: ``--secrets``, else its defaults (the user's, then the
    folder's, the later winning)."""
    if secrets is not None:
        return [secrets]
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]


def secrets_auth(secrets: Path | None = None) -> dict | None:
    """The ``[auth]`` section Streamlit will see, or None; a file it cannot read is a usage error."""
    if secrets is not None and not secrets.is_file():
        fail(f"--secrets {secrets}: no such file")
    auth = None
    for path in _secrets_files(secrets):
        try:
            parsed = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            fail(f"cannot read the secrets file {path}: {first_line(exc)}")
        if "auth" in parsed:
            auth = parsed["auth"] if isinstance(parsed["auth"], dict) else {}
    return auth


def _sign_in_url(auth: dict) -> str | None:
    """The origin of ``redirect_uri``: where the sign-in cookie works."""
    parts = urlsplit(str(auth.get("redirect_uri") or ""))
    return f"{parts.scheme}://{parts.netloc}/" if parts.scheme in ("http", "https") and parts.netloc else None


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (a closed connection's TIME_WAIT does not count).
    Other bind errors (an address of another machine, a privileged port) are left to the server
    to report."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def _has_a_browser() -> bool:
    """Without $BROWSER or a display, Python's webbrowser would start a text browser (w3m, lynx)
    in the user's terminal; on Linux and BSD that counts as no browser."""
    if os.environ.get("BROWSER") or sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_when_ready(url: str, timeout: float = OPEN_TIMEOUT) -> bool:
    """Open ``url`` in the browser once it answers; False when it never did or no browser opened."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via $http_proxy
    deadline = time.monotonic() + timeout
    while True:
        try:
            with direct.open(url, timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def _open_in_background(url: str) -> None:
    """Run ``open_when_ready`` in a detached grandchild process: this process becomes Streamlit
    (exec) right after, which no thread survives, and a grandchild is nobody's child to reap."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # it exits at once, leaving the grandchild to init
        return
    try:
        if os.fork() == 0:
            os.setsid()
            stderr = os.dup(2)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # the browser's own chatter stays out of the user's terminal
                os.dup2(devnull, fd)
            if not open_when_ready(url):
                os.write(stderr, f"spendlog dashboard: could not open a browser; open {url}\n".encode())
    finally:
        os._exit(0)


@click.command("dashboard")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (keep 127.0.0.1 unless others should see your spend).")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser window (for servers and scripts).")
@click.option("--secrets", "secrets", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Streamlit secrets file with the [auth] sign-in section (default: .streamlit/secrets.toml).")
@click.option("--allow-anonymous", is_flag=True,
              help="Serve a --host other than loopback without sign-in (anyone who reaches it sees the spend).")
def dashboard_cmd(db_url: str | None, host: str, port: int, no_browser: bool, secrets: Path | None,
                  allow_anonymous: bool) -> None:
    """Open the spend dashboard in the browser."""
    from spendlog.db.engine import mask_url, resolve_url

    resolved = resolve_url(db_url)  # a bad URL ends here with one line and exit code 2
    if secrets is not None:
        secrets = secrets.expanduser().resolve()
    auth = secrets_auth(secrets)
    if auth is None and not is_loopback(host) and not allow_anonymous:
        fail(f"--host {host} without sign-in lets anyone who reaches it read the spend: add an [auth] section "
             "to the secrets file (docs/auth.md) or pass --allow-anonymous")
    if not _package_file("app.py").is_file():
        fail("the dashboard files are missing from this installation; reinstall spendlog")
    if not port_free(host, port):
        fail(f"port {port} on {host} is in use; pass --port with a free one")
    argv, env = streamlit_command(host=host, port=port, db_url=db_url, secrets=secrets)
    url = dashboard_url(host, port)
    where = "" if url == f"http://{host}:{port}/" else f"listening on {host}; "
    if auth is not None:
        signed = _sign_in_url(auth)
        if signed and signed != url:
            url, where = signed, f"listening on {host}:{port}; sign-in; "
        elif signed:
            where = f"{where}sign-in; "
    click.echo(f"spendlog dashboard: {url}  ({where}database {mask_url(resolved)}; Ctrl+C stops)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if not no_browser and _has_a_browser() and hasattr(os, "fork"):
        _open_in_background(url)
    os.execve(sys.executable, argv, env)
