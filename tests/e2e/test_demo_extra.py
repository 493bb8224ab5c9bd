"""The fake SolRouter's server (starlette, uvicorn) comes with the ``demo`` extra: without it,
``spendlog demo`` and ``spendlog fake-upstream`` say in one line what to install (exit 2), and the
rest of spendlog (the hook, the proxy) does not need it."""

from __future__ import annotations

import pytest
from helpers import run_python

WITHOUT_THE_EXTRA = """
import sys
sys.modules["starlette"] = None  # as if the demo extra were not installed
sys.modules["uvicorn"] = None
sys.argv = ["spendlog", *{args!r}]
from spendlog.cli import main
main()
"""


@pytest.mark.parametrize("command", ["demo", "fake-upstream"])
def test_without_the_demo_extra_the_command_says_what_to_install(command):
    result = run_python(WITHOUT_THE_EXTRA.format(args=[command, "--port", "1"]))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"spendlog: error: `spendlog {command}` needs starlette and uvicorn, which come with the demo extra: "
        "pip install 'spendlog[demo]'"]


def test_the_hook_and_the_proxy_do_not_need_the_demo_extra():
    result = run_python("""
import sys
sys.modules["starlette"] = None
sys.modules["uvicorn"] = None
import spendlog, spendlog.proxy, spendlog.cli, spendlog.db.writer
print("imported")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
