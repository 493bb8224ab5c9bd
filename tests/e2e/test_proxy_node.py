"""The official `openai` npm package, from Node, through the proxy (tests/node/).

The package is installed once per session with `npm install` into tests/node/node_modules
(git-ignored; kept between runs). Without node/npm, or when the install fails, these tests skip,
except under CI=true, where they fail.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import IN_CI
from fixture_proxy import normalise, rows, usage_of

from spendlog.fake_upstream import expected_usage

NODE_DIR = Path(__file__).parent.parent / "node"
MESSAGES = [{"role": "user", "content": "Say hello to the proxy from Node"}]


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _installed_version() -> str | None:
    try:
        return json.loads((NODE_DIR / "node_modules" / "openai" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def node_sdk() -> str:
    """The path of the node binary, with the pinned `openai` package installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("node and npm are needed for the Node SDK tests")
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["openai"]
    modules = NODE_DIR / "node_modules"
    modules.mkdir(exist_ok=True)
    with open(modules / ".spendlog-install.lock", "w") as lock:  # parallel sessions install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() != wanted:
            try:
                done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                                      cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                _unavailable("npm install timed out after 300 s")
            if done.returncode != 0 or _installed_version() != wanted:
                _unavailable(f"npm install of openai@{wanted} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return node


def _node(node: str, base_url: str, key: str, mode: str, model: str = "openai/gpt-4o-mini", headers=None):
    done = subprocess.run([node, str(NODE_DIR / "chat.mjs"), base_url, key, mode, model, json.dumps(headers or {})],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _same(a, b) -> bool:
    return normalise(json.dumps(a, sort_keys=True).encode()) == normalise(json.dumps(b, sort_keys=True).encode())


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "deepseek/deepseek-r1"])
def test_node_plain_call(node_sdk, fake_upstream, proxy, model):
    direct = _node(node_sdk, fake_upstream.base_url, fake_upstream.api_key, "plain", model)
    proxied = _node(node_sdk, proxy.base_url, fake_upstream.api_key, "plain", model)
    assert _same(proxied, direct)
    [row] = rows(expect=1)
    assert usage_of(row) == expected_usage(model, {"model": model, "messages": MESSAGES})
    assert row.request_id == proxied["id"]


def test_node_stream_without_and_with_usage(node_sdk, fake_upstream, proxy):
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    direct = _node(node_sdk, fake_upstream.base_url, fake_upstream.api_key, "stream")
    proxied = _node(node_sdk, proxy.base_url, fake_upstream.api_key, "stream")
    assert len(proxied) > 3 and _same(proxied, direct)
    assert all(chunk["choices"] and "usage" not in chunk for chunk in proxied)

    with_usage = _node(node_sdk, proxy.base_url, fake_upstream.api_key, "stream-usage")
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] > 0

    plain_row, usage_row = rows(expect=2)
    assert usage_of(plain_row) == expected_usage(body["model"], body)
    assert usage_of(usage_row) == expected_usage(body["model"], {**body, "stream_options": {"include_usage": True}})
    assert plain_row.stream is True and plain_row.error_type is None


def test_node_embeddings_errors_and_attribution(node_sdk, fake_upstream, proxy):
    emb = _node(node_sdk, proxy.base_url, fake_upstream.api_key, "embeddings", "openai/text-embedding-3-small",
                {"X-Spendlog-App": "node-app", "X-Spendlog-Tags": "lang=js"})
    assert len(emb["data"]) == 2
    direct = _node(node_sdk, fake_upstream.base_url, fake_upstream.api_key, "error", "fake/error-429")
    proxied = _node(node_sdk, proxy.base_url, fake_upstream.api_key, "error", "fake/error-429")
    assert proxied == direct and proxied["error"]["status"] == 429
    emb_row, err_row = rows(expect=2)
    assert (emb_row.app, emb_row.tags, emb_row.endpoint) == ("node-app", {"lang": "js"}, "/v1/embeddings")
    assert usage_of(emb_row) == expected_usage("openai/text-embedding-3-small",
                                               {"model": "openai/text-embedding-3-small", "input": ["node", "proxy"],
                                                "encoding_format": "float"}, "embeddings")
    assert err_row.error_type == "http_429"
    assert not any(h.startswith("x-spendlog") for r in fake_upstream.requests for h in r.headers)
