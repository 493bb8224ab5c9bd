"""``spendlog demo``: a fake SolRouter, believable history, live calls and the dashboard.

- ``backfill``: the deterministic traffic generator (``generate_records``), reusable by benchmarks;
- ``live``: live calls through the real hook and the real proxy;
- ``run``: starting and stopping everything (``run_demo``).
"""

from .traffic import generate_records
from .run import DemoError, DemoOptions, backfill, demo_db_url, run_demo

__all__ = ["DemoError", "DemoOptions", "backfill", "demo_db_url", "generate_records", "run_demo"]
