"""A real OpenID provider for the sign-in tests: the npm package ``oidc-provider`` (pinned in
tests/oidc/package.json) run by tests/oidc/provider.mjs on 127.0.0.1.

- ``oidc_node`` (session): the node binary, with the package installed once into
  tests/oidc/node_modules (git-ignored, kept between runs; parallel sessions wait on a file lock).
- ``oidc_provider`` (module): a running provider with one confidential client whose redirect URI
  is ``http://127.0.0.1:<app_port>/oauth2callback`` for a port picked for the app under test.
  Yields an ``OIDCProvider`` (issuer, metadata_url, client_id, client_secret, redirect_uri,
  app_port) and stops the provider afterwards.

Without node/npm, or when the install fails, these skip, except under CI=true, where they fail.
``secrets_toml(provider, ...)`` writes the ``.streamlit/secrets.toml`` text for that provider.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import IN_CI
from fixture_dashboard import _stop as stop_server
from fixture_dashboard import free_port

OIDC_DIR = Path(__file__).parent / "oidc"
PACKAGE = "oidc-provider"


def unavailable(reason: str):
    """Skip for a missing tool, or fail under CI=true."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _installed_version(folder: Path, package: str) -> str | None:
    try:
        return json.loads((folder / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_install(folder: Path, package: str) -> str:
    """The node binary, once ``folder``'s pinned ``package`` is in ``folder``/node_modules."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        unavailable(f"node and npm are needed for the tests that use {package}")
    wanted = json.loads((folder / "package.json").read_text())["dependencies"][package]
    modules = folder / "node_modules"
    modules.mkdir(exist_ok=True)
    with open(modules / ".spendlog-install.lock", "w") as lock:  # parallel sessions install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(folder, package) != wanted:
            try:
                done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                                      cwd=folder, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                unavailable("npm install timed out after 300 s")
            if done.returncode != 0 or _installed_version(folder, package) != wanted:
                unavailable(f"npm install of {package}@{wanted} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return node


@pytest.fixture(scope="session")
def oidc_node() -> str:
    return npm_install(OIDC_DIR, PACKAGE)


@dataclass(frozen=True)
class OIDCProvider:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    app_port: int

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}/"


def _ready_line(proc: subprocess.Popen, timeout: float) -> str:
    """The provider's first stdout line (its issuer), or "" when it exits or stays silent."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


@pytest.fixture(scope="module")
def oidc_provider(oidc_node, tmp_path_factory):
    app_port = free_port()
    client_id, client_secret = "spendlog-dashboard", secrets.token_urlsafe(24)
    redirect_uri = f"http://127.0.0.1:{app_port}/oauth2callback"
    env = {**os.environ, "OIDC_CLIENT_ID": client_id, "OIDC_CLIENT_SECRET": client_secret,
           "OIDC_REDIRECT_URIS": redirect_uri, "OIDC_TTL_SECONDS": "300", "OIDC_UNVERIFIED": "unverified@example.com"}
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([oidc_node, str(OIDC_DIR / "provider.mjs"), "0"], cwd=OIDC_DIR, env=env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = _ready_line(proc, timeout=30)
        if not line:
            unavailable(f"the OpenID provider did not start: {log.read_text()[-1000:]}")
        issuer = json.loads(line)["issuer"]
        yield OIDCProvider(issuer, client_id, client_secret, redirect_uri, app_port)
    finally:
        try:
            stop_server(proc)  # SIGTERM, and gone within 20 s
        finally:
            proc.stdout.close()


def secrets_toml(provider: OIDCProvider, *, cookie_secret: str, allowed: list[str] | None = None,
                 sign_in_hours: float | None = None) -> str:
    """The secrets.toml text that points Streamlit's st.login at ``provider``."""
    lines = [
        "[auth]",
        f"redirect_uri = {json.dumps(provider.redirect_uri)}",
        f"cookie_secret = {json.dumps(cookie_secret)}",
        f"client_id = {json.dumps(provider.client_id)}",
        f"client_secret = {json.dumps(provider.client_secret)}",
        f"server_metadata_url = {json.dumps(provider.metadata_url)}",
    ]
    if allowed is not None or sign_in_hours is not None:
        lines.append("\n[spendlog]")
    if allowed is not None:
        lines.append(f"allowed = {json.dumps(allowed)}")
    if sign_in_hours is not None:
        lines.append(f"sign_in_hours = {sign_in_hours}")
    return "\n".join(lines) + "\n"
