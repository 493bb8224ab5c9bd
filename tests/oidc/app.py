"""A minimal page behind the dashboard's sign-in (tests/test_oidc_browser.py): the gate, then a
fake figure that must never reach a browser the gate refused."""

import streamlit as st

from spendlog.dashboard import auth

FIGURE = "TOTAL $123.45"

st.set_page_config(page_title="spendlog sign-in test")
if auth.gate():
    st.header(FIGURE)
