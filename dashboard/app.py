"""The Streamlit entry point: ``spendlog dashboard`` runs ``streamlit run`` on this file.

Kept thin on purpose: the page lives in ``spendlog.dashboard.page``."""

from spendlog.dashboard.page import main

main()
