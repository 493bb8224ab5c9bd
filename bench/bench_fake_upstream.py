"""How fast the fake upstream answers, so other benchmarks know it is not their bottleneck.

    python bench/bench_fake_upstream.py [--requests 6000] [--concurrency 32]
The fake runs in its own process (`spawn_fake_upstream()`, i.e. `spendlog fake-upstream --port 0`); a minimal raw-socket client
(keep-alive HTTP/1.1, no parsing beyond Content-Length) drives it, so the figures are the server's.
Prints requests/s for plain chat completions and short streams, and SSE chunks/s for long streams.
On a 2-core machine the client and the server share the cores: figures are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
KEY = "sr_test_benchmark0000"

from spendlog.fake_upstream import spawn_fake_upstream  # noqa: E402


def request(body: dict, extra: str = "", close: bool = False) -> bytes:
    data = json.dumps(body).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
    return head.encode() + data


async def keepalive_worker(port: int, payload: bytes, n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(n):
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:80]
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        await reader.readexactly(length)
    writer.close()


async def close_worker(port: int, payload: bytes, n: int) -> int:
    total = 0
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        data = await reader.read(-1)
        assert data.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in data, data[:200]
        total += data.count(b"\ndata: ") + data.startswith(b"data: ")
        writer.close()
    return total


async def timed(coros) -> tuple[float, list]:
    started = time.perf_counter()
    results = await asyncio.gather(*coros)
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in parallel")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    with spawn_fake_upstream() as fake:
        port = fake.port
        plain = request(CHAT)
        asyncio.run(timed([keepalive_worker(port, plain, 50) for _ in range(4)]))  # warm up
        secs, _ = asyncio.run(timed([keepalive_worker(port, plain, n // c) for _ in range(c)]))
        rows = [("chat completion, keep-alive", f"{n // c * c / secs:,.0f} req/s")]
        stream = request({**CHAT, "stream": True, "stream_options": {"include_usage": True}}, close=True)
        m = max(c, n // 4)
        secs, counts = asyncio.run(timed([close_worker(port, stream, m // c) for _ in range(c)]))
        per = sum(counts) / (m // c * c)
        rows.append((f"short stream (~{per:.0f} events), new connection each", f"{m // c * c / secs:,.0f} req/s"))
        long = request({**CHAT, "stream": True}, extra="X-Fake-Chunks: 50000\r\n", close=True)
        secs, counts = asyncio.run(timed([close_worker(port, long, 1) for _ in range(4)]))
        rows.append(("long streams (4 x 50,000 chunks)", f"{sum(counts) / secs:,.0f} chunks/s"))
    print("| fake upstream | throughput |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
