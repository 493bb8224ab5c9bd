"""Fixtures that run the fake upstream (owned by the capture work; see spendlog/fake_upstream.py)."""
