"""The built wheel works on its own: migrations ship inside it and a call is recorded."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest
from helpers import ROOT, install_wheel

from spendlog.db.migrate import head_revision


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_records_a_call(tmp_path):
    # Dependencies come from this environment (no network needed); spendlog itself only from the wheel.
    venv = install_wheel(tmp_path)
    py = venv / "bin" / "python"

    db_file = tmp_path / "wheel.db"
    env = dict(os.environ, SPENDLOG_DATA_DIR=str(tmp_path / "data"), SPENDLOG_DB_URL=f"sqlite:///{db_file}")
    script = textwrap.dedent(
        """
        import uuid
        from datetime import datetime, timezone
        from decimal import Decimal
        import spendlog, spendlog.migrations
        from spendlog.db.ids import uuid7
        from spendlog.db.writer import submit
        assert "site-packages" in spendlog.migrations.__file__, spendlog.migrations.__file__
        submit({"id": uuid7(), "created_at": datetime.now(timezone.utc), "endpoint": "/v1/chat/completions",
                "model": "openai/gpt-4o-mini", "status_code": 200, "cost_usd": Decimal("0.0000148"),
                "cost_source": "upstream"})
        print(spendlog.migrations.__file__)
        """
    )
    run = subprocess.run([str(py), "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(ROOT) not in run.stdout

    status = subprocess.run([str(venv / "bin" / "spendlog"), "db", "status"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "rows:      1" in status.stdout and f"revision:  {head_revision()} (the newest)" in status.stdout
