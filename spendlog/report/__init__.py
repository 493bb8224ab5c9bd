"""The read room: what spendlog makes of the ledger for people and for finance.

It reads only through ``spendlog.db`` (the shared queries, so every file agrees with every screen)
and never imports the capture modules (transports, client, proxy, usage parsing):

- ``money``: money as text, ``money_exact`` (files) and ``money_display`` (screens);
- ``table``: the cell rules of every file and the table writer (CSV, JSON lines);
- ``files``: the per-call and grouped exports (``spendlog export``, the dashboard's downloads);
- ``focus``: the same as FinOps FOCUS rows;
- ``summary`` and ``terminal``: ``spendlog summary``'s text and plain terminal tables;
- ``reconcile``: a reconciliation report as CSV or JSON.

Import the module you need (``from spendlog.report.money import money_exact``); this package
imports none of them itself.
"""
