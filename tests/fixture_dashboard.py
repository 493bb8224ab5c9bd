"""Fixtures that run the dashboard (`spendlog dashboard`, a Streamlit server in a subprocess).

- `dashboard_factory`: `dashboard_factory(db=None, *, command=None, env=None, cwd)` starts
  `spendlog dashboard --no-browser` on 127.0.0.1 and a free port (``--db db`` when given), waits
  until Streamlit's health endpoint answers "ok", and returns its URL ("http://127.0.0.1:PORT/").
  ``command`` replaces ``python -m spendlog`` (e.g. the ``spendlog`` script of another venv);
  ``env`` is the whole environment (default: this one). Each is stopped after the test
  (SIGTERM; one still running 20 s later is killed and the test errors).

Helpers (``from fixture_dashboard import free_port, wait_healthy``): Streamlit refuses ``--port 0``,
so ``free_port`` asks the kernel for a free port number to pass on.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise AssertionError(f"dashboard exited with {proc.returncode}: {stderr}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("dashboard did not become healthy")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, and the dashboard must be gone within 20 s (else it is killed and the test errors)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)
        raise AssertionError("dashboard did not stop within 20 s of SIGTERM") from None
    finally:
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def dashboard_factory():
    started: list[subprocess.Popen] = []

    def start(db: str | None = None, *, command: list[str] | None = None, env: dict | None = None,
              cwd: Path) -> str:
        port = free_port()
        argv = [*(command or [sys.executable, "-m", "spendlog"]), "dashboard", "--no-browser", "--port", str(port)]
        if db is not None:
            argv += ["--db", db]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        started.append(proc)
        wait_healthy(port, proc)
        return f"http://127.0.0.1:{port}/"

    yield start
    errors = []
    for proc in started:
        try:
            _stop(proc)
        except AssertionError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
