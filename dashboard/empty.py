"""What the dashboard shows before there is anything to show: how to start recording."""

from __future__ import annotations

import streamlit as st

__all__ = ["show_empty", "HOOK_SNIPPET", "PROXY_SNIPPET"]

HOOK_SNIPPET = """\
import os
import httpx2, spendlog
from openai import OpenAI

client = OpenAI(
    base_url="https://api.solrouter.io/v1",
    api_key=os.environ["SOLROUTER_API_KEY"],
    http_client=httpx2.Client(transport=spendlog.LoggingTransport(httpx2.HTTPTransport(), app="my-app")),
)
print(client.chat.completions.create(
    model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]).choices[0].message.content)"""

PROXY_SNIPPET = """\
spendlog proxy            # http://127.0.0.1:8787/v1 -> https://api.solrouter.io/v1
curl http://127.0.0.1:8787/v1/chat/completions \\
  -H "Authorization: Bearer $SOLROUTER_API_KEY" -H "Content-Type: application/json" \\
  -H "X-Spendlog-App: my-app" \\
  -d '{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'"""


def show_empty(masked_url: str) -> None:
    st.title("spendlog")
    st.info(f"No calls recorded yet in **{masked_url}**. Record some: this page checks every few seconds and shows them.")
    st.subheader("Python: one line in your OpenAI client")
    st.code(HOOK_SNIPPET, language="python")
    st.subheader("Any language: point your base URL at the local proxy")
    st.code(PROXY_SNIPPET, language="bash")
    st.caption("Just looking around? `spendlog demo` fills a separate demo ledger with believable traffic.")
