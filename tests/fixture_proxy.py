"""Fixtures that run the proxy (owned by the proxy work; see spendlog/proxy.py)."""
