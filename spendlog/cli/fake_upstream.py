"""`spendlog fake-upstream`: serve the fake SolRouter on a local port until interrupted."""

from __future__ import annotations

import re

import click

from ._common import need_demo_extra


@click.command("fake-upstream")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8790, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Wait this long before answering each request (X-Fake-Latency-Ms overrides).")
@click.option("--chunk-delay-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Wait this long between streamed events (X-Fake-Chunk-Delay-Ms overrides).")
@click.option("--no-cost", is_flag=True,
              help="Answer like OpenAI itself: usage without `cost` (X-Fake-No-Cost: 0/1 overrides per request).")
@click.option("--management-key", envvar="SOLROUTER_MANAGEMENT_KEY", show_envvar=True, metavar="KEY",
              help="The only key GET /v1/activity accepts (default: any 'sr_mgmt_...' key). Never printed.")
def fake_upstream_cmd(host: str, port: int, latency_ms: float, chunk_delay_ms: float, no_cost: bool,
                      management_key: str | None) -> None:
    """Run a local fake SolRouter (OpenAI-compatible, exact usage and cost) for tests and demos."""
    need_demo_extra("fake-upstream")
    import socket

    import uvicorn

    from spendlog.fake_upstream import FAKE_MODELS, PRICES, create_app, new_test_key

    if management_key is not None and not re.fullmatch(r"\S{8,}", management_key):
        raise click.UsageError("the management key (--management-key or SOLROUTER_MANAGEMENT_KEY) must be "
                               "at least 8 characters without spaces")
    app = create_app(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, no_cost=no_cost,
                     management_key=management_key)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Fake SolRouter at http://{shown}:{bound}/v1 (any 'Bearer sr_...' key works, e.g. {new_test_key()})")
    click.echo(f"Models: {', '.join(PRICES)}; test models: {', '.join(FAKE_MODELS)}. Ctrl+C stops.")
    who = "the management key it was given" if management_key else "any 'sr_mgmt_...' key"
    click.echo(f"GET /v1/activity: what it billed, per UTC day and model ({who})."
               + (" Answers carry no cost (--no-cost)." if no_cost else ""))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none", backlog=4096)
    uvicorn.Server(config).run(sockets=[sock])
