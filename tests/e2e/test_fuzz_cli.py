"""The CLI with bad input (issue 8, bad input): bad dates, bad ``--by``, bad database URLs, an
unwritable ``-o``, on every command that takes them. Each must end in one clear line
(``spendlog: error: ...``), exit code 2, no traceback, no password. A hypothesis sweep feeds
arbitrary text to the date, group and timezone options.

tests/test_export.py::test_bad_arguments_give_one_line_and_exit_2 lists the export's own cases
(impossible dates, unknown groups, --to before --from, a missing -o folder); this covers the other
commands, the other kinds of unwritable output, and broken database files.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import IN_CI
from helpers import make_record
from spendlog.cli import cli
from spendlog.db.engine import make_engine
from spendlog.db.migrate import ensure_schema
from spendlog.db.store import insert_records

EXAMPLES = int(os.environ.get("SPENDLOG_HYPOTHESIS_EXAMPLES", "200"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_exit_2(code: int, out: str, err: str, *, secret: str | None = None) -> str:
    assert code == 2, (code, out[:300], err[:500])
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spendlog: error: "), err
    assert "Traceback" not in err and "Traceback" not in out
    if secret:
        assert secret not in err and secret not in out
    return lines[0]


@pytest.fixture
def ledger(sqlite_url):
    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record() for _ in range(5)])
    engine.dispose()
    return sqlite_url


# -- database URLs on every command that takes one -------------------------------------------------

COMMANDS = [["export"], ["summary"], ["db", "status"], ["db", "upgrade"], ["db", "rebuild-rollups"]]


def _bad_urls(tmp_path):
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(os.urandom(4096))
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    return {
        "unknown scheme": "nonsense://x",
        "not a URL": "::not a url::",
        "unsupported backend": "mysql://u@h/d",
        "unreachable postgres with a password": "postgresql+psycopg://spend:hunter2pw@127.0.0.1:1/ledger",
        "sqlite file under a regular file": f"sqlite:///{garbage}/x/ledger.db",
        "sqlite file that is not a database": f"sqlite:///{garbage}",
        "sqlite path that is a folder": f"sqlite:///{folder}",
    }


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_bad_database_urls_are_one_line_and_exit_2(command, tmp_path):
    failures = []
    for name, url in _bad_urls(tmp_path).items():
        code, out, err = run(*command, "--db", url)
        try:
            assert_one_line_exit_2(code, out, err, secret="hunter2pw")
        except AssertionError as exc:
            failures.append(f"{name}: exit {code}: {(err or out).strip()[-200:]!r} ({str(exc).splitlines()[0][:60]})")
    assert not failures, "\n".join(failures)


def test_bad_database_url_in_the_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("SPENDLOG_DB_URL", "postgresql+psycopg://spend:hunter2pw@127.0.0.1:1/ledger")
    for command in (["export"], ["summary"], ["db", "status"]):
        assert_one_line_exit_2(*run(*command), secret="hunter2pw")


# -- unwritable outputs -------------------------------------------------------------------------------

def _root_tools() -> bool:
    return os.geteuid() == 0 and shutil.which("chattr") is not None and shutil.which("mount") is not None


@pytest.fixture
def outdir(tmp_path):
    """A folder for the outputs, with (as root) an immutable sub-folder, a private full-disk
    device (the /dev/full device, mknod'ed here: never the system's own), and a full 1 MiB tmpfs."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "afile").write_text("x")
    extra = {}
    if _root_tools():
        (out / "locked").mkdir()
        subprocess.run(["chattr", "+i", str(out / "locked")], check=True)
        extra["an immutable folder"] = str(out / "locked" / "x.csv")
        os.mknod(out / "full-device", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        extra["a device that is always full"] = str(out / "full-device")
        (out / "small").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out / "small")], check=True)
        with open(out / "small" / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        extra["a full disk"] = str(out / "small" / "x.csv")
    elif IN_CI:
        pytest.fail("CI=true but the unwritable-output cases need root (chattr, mknod, mount)")
    yield out, extra
    if _root_tools():
        subprocess.run(["chattr", "-i", str(out / "locked")], check=False)
        subprocess.run(["umount", "-l", str(out / "small")], check=False)


def _tree(folder) -> dict:
    return {str(p): (p.stat().st_mode, p.stat().st_size) for p in sorted(folder.rglob("*"))}


def test_unwritable_outputs_are_one_line_exit_2_and_leave_nothing_behind(ledger, outdir):
    out, extra = outdir
    cases = {"a folder": str(out), "a missing folder": str(out / "missing" / "x.csv"),
             "a file inside a file": str(out / "afile" / "x.csv"), **extra}
    failures = []
    for name, path in cases.items():
        before = _tree(out)
        code, stdout, err = run("export", "--db", ledger, "-o", path)
        try:
            assert_one_line_exit_2(code, stdout, err)
            assert _tree(out) == before, "files changed: a partial file left behind, or the target replaced"
        except AssertionError as exc:
            failures.append(f"{name}: exit {code}: {(err or stdout).strip()[-160:]!r} "
                            f"({str(exc).splitlines()[0][:90]})")
    assert not failures, "\n".join(failures)


def test_stdout_closed_early_is_not_a_traceback(ledger):
    """``spendlog export | head -1``: the reader goes away; no traceback on stderr."""
    proc = subprocess.run(f"{sys.executable} -m spendlog export --db {ledger} --by call | head -c 10",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr


# -- arbitrary option values ------------------------------------------------------------------------

option_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["2024-02-30", "2024-13-01", "0000-01-01", "9999-12-31", "2024-1-1", "2024-01-01T00:00",
                     "-1", "", " ", "\x00", "today", "2024-01-01\n", "day,,model", "call,call", "DAY", "key,user,app",
                     "Europe/../../etc/passwd", "UTC+25", "Etc/GMT+14", "../../x"]),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--from", "--to", "--by", "--tz"]), value=option_text,
       command=st.sampled_from(["export", "summary"]))
def test_any_option_value_is_accepted_or_one_line_exit_2(ledger, option, value, command):
    code, out, err = run(command, "--db", ledger, option, value)
    if code == 0:
        assert "Traceback" not in err
        return
    assert_one_line_exit_2(code, out, err)
