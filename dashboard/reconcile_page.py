"""The Reconciliation page's script (a file page, so the navigation and AppTest can open it by path):
the page itself is ``spendlog.dashboard.reconcile_view``."""

from spendlog.dashboard.reconcile_view import page

page()
