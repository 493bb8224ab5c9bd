"""`spendlog proxy`: run the local logging proxy."""

from __future__ import annotations

import os

import click

from ._common import db_option, fail
from .reprice import prices_option, use_prices_file


@click.command("proxy")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --allow-remote and SPENDLOG_PROXY_TOKEN.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port to listen on (0: a free port).")
@click.option("--upstream", metavar="URL", default=None,
              help="Base URL to forward to (ends in /v1). Default: $SPENDLOG_UPSTREAM, else https://api.solrouter.io/v1.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host; clients must then send X-Spendlog-Proxy-Token: $SPENDLOG_PROXY_TOKEN.")
@click.option("--max-body-bytes", default=10 * 1024 * 1024, show_default=True, type=int, metavar="N",
              help="Largest request body forwarded; bigger ones get 413.")
@click.option("--shutdown-timeout", default=10.0, show_default=True, type=float, metavar="SECONDS",
              help="On SIGTERM/Ctrl+C, how long requests in flight may take to finish.")
@click.option("--header-timeout", default=10.0, show_default=True, type=float, metavar="SECONDS",
              help="Deadline for each request's headers; slower clients get 408 and are disconnected.")
@click.option("--workers", default="1", show_default=True, metavar="N|auto",
              help="Processes serving the one port (SO_REUSEPORT), each with its own ledger writer; auto: one per core.")
@click.option("--budget-refresh", default=5.0, show_default=True, type=click.FloatRange(min=0.05), metavar="SECONDS",
              help="How often the hard-budget check re-reads spend from the ledger (own calls count at once).")
@prices_option
@db_option
def proxy_cmd(host: str, port: int, upstream: str | None, allow_remote: bool, max_body_bytes: int,
              shutdown_timeout: float, header_timeout: float, workers: str, budget_refresh: float,
              prices_path: str | None, db_url: str | None) -> None:
    """Run the local OpenAI-compatible proxy that records every call (base URL http://127.0.0.1:8787/v1)."""
    from spendlog.db.engine import resolve_url
    from spendlog.proxy import ProxyConfig, ProxyConfigError, default_upstream, is_loopback, serve
    from spendlog.proxy.app import open_socket
    from spendlog.proxy.workers import WorkersError, parse_workers, run_workers

    try:
        count = parse_workers(workers)
    except ValueError as exc:
        fail(str(exc))
    resolve_url(db_url)  # a bad --db or SPENDLOG_DB_URL stops here, with one line
    use_prices_file(prices_path)  # a bad prices file too; the writer prices with it
    try:
        config = ProxyConfig(upstream=upstream or default_upstream(), host=host, port=port,
                             allow_remote=allow_remote, token=os.environ.get("SPENDLOG_PROXY_TOKEN") or None,
                             max_body_bytes=max_body_bytes, db_url=db_url, shutdown_timeout=shutdown_timeout,
                             header_timeout=header_timeout, budget_refresh=budget_refresh)
    except ProxyConfigError as exc:
        fail(str(exc))
    upstream_url = config.upstream_url
    if upstream_url.scheme == "http" and not is_loopback(upstream_url.host or ""):
        click.echo(f"spendlog proxy: warning: {config.upstream} is plain http; your clients' keys cross the "
                   "network unencrypted", err=True)
    if count > 1:
        try:
            clean = run_workers(config, count)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        except WorkersError as exc:
            raise click.ClickException(str(exc)) from None
        if not clean:
            raise SystemExit(1)
        return
    try:
        sock = open_socket(config.host, config.port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    serve(config, sock=sock)
