"""What the hook (spendlog.LoggingTransport) adds to a call and to each streamed chunk.

    python bench/bench_hook.py [--calls 2000] [--chunks 20000]

Same run, same client code, bare transport vs hook, calls interleaved (bare, hook, hook, bare...)
so that machine noise hits both sides alike. Two setups:

- over HTTP: a sync ``httpx.Client`` (keep-alive) against the fake upstream in its own process
  (``spawn_fake_upstream``); the median time per call is compared. Honest but noisy: the network
  round trip and the fake's own time are in both medians.
- in memory: the same client and hook over an inner transport that answers from memory (a recorded
  fake answer), so what remains is the client plus, on the hook side, the hook: the added time per
  call and per chunk without network noise. Once more with the records appended to a list instead
  of the writer: the hook's own CPU, without the writer thread (which shares the GIL) inserting.

Per chunk: a streamed answer of N chunks (zero delay) read with ``iter_raw``; over HTTP the reads
hold many events each, in memory every chunk is its own read (the worst case for the hook).
Every hooked call is really recorded (a SQLite ledger in a temp dir, the background writer running).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import timeit

_tmp = tempfile.mkdtemp(prefix="spendlog-bench-hook-")
os.environ["SPENDLOG_DATA_DIR"] = _tmp
os.environ["SPENDLOG_DB_URL"] = f"sqlite:///{_tmp}/bench.db"

import httpx  # noqa: E402

import spendlog  # noqa: E402
from spendlog.db import writer  # noqa: E402
from spendlog.fake_upstream import spawn_fake_upstream  # noqa: E402

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "What is the meaning of life?"}]}


class Canned:
    """An inner transport answering from memory: status, headers and the body split in chunks."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
        self.status, self.headers, self.chunks = status, headers, chunks

    def handle_request(self, request):
        return httpx.Response(self.status, headers=self.headers, stream=_Chunks(self.chunks), request=request)

    def close(self):
        pass


class _Chunks(httpx.SyncByteStream):
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)


def call_times(clients: dict[str, httpx.Client], url: str, headers: dict, body: dict, n: int) -> dict[str, list[float]]:
    """Per-call seconds for each client, interleaved ABBA so drift and noise fall on both."""
    times: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    for i in range(n):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            t0 = time.perf_counter()
            r = clients[name].post(url, headers=headers, json=body)
            r.read()
            times[name].append(time.perf_counter() - t0)
            assert r.status_code == 200
    return times


def stream_time(client: httpx.Client, url: str, headers: dict, body: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    reads = 0
    with client.stream("POST", url, headers=headers, json=body) as r:
        for _ in r.iter_raw():
            reads += 1
    return time.perf_counter() - t0, reads


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per side and setup")
    parser.add_argument("--chunks", type=int, default=20000, help="chunks in each long stream")
    parser.add_argument("--streams", type=int, default=5, help="long streams per side")
    args = parser.parse_args()
    rows = []
    stream_body = {**CHAT, "stream": True}
    with spawn_fake_upstream() as fake:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        url = fake.base_url + "/chat/completions"
        clients = {"bare": httpx.Client(transport=httpx.HTTPTransport()),
                   "hook": httpx.Client(transport=spendlog.LoggingTransport(httpx.HTTPTransport(), app="bench"))}
        call_times(clients, url, auth, CHAT, 100)  # warm up connections and caches
        t = call_times(clients, url, auth, CHAT, args.calls)
        bare, hook = statistics.median(t["bare"]), statistics.median(t["hook"])
        rows.append(("HTTP, chat completion", f"{us(bare)} µs", f"{us(hook)} µs", f"{us(hook - bare)} µs/call"))

        # what the fake sends, recorded once, for the in-memory setup
        raw = httpx.post(url, headers=auth, json=CHAT)
        json_answer = Canned(200, [(b"content-type", b"application/json")], [raw.content])
        long_headers = {**auth, "X-Fake-Chunks": str(args.chunks)}
        with httpx.stream("POST", url, headers=long_headers,
                          json={**stream_body, "stream_options": {"include_usage": True}}) as r:
            sse = r.read()
        events = [e + b"\n\n" for e in sse.split(b"\n\n") if e]

        # long streams over HTTP: bare vs hook, interleaved
        per_side: dict[str, list[float]] = {"bare": [], "hook": []}
        chunk_count = 0
        for i in range(args.streams):
            for name in (("bare", "hook") if i % 2 == 0 else ("hook", "bare")):
                secs, _reads = stream_time(clients[name], url, long_headers, stream_body)
                per_side[name].append(secs)
        chunk_count = args.chunks + 2  # content chunks + role chunk + finish chunk
        sb, sh = statistics.median(per_side["bare"]), statistics.median(per_side["hook"])
        rows.append((f"HTTP, stream of {chunk_count:,} chunks", f"{us(sb / chunk_count)} µs/chunk",
                     f"{us(sh / chunk_count)} µs/chunk", f"{us((sh - sb) / chunk_count)} µs/chunk"))

    # in memory: no network, the hook's own cost
    mem = {"bare": httpx.Client(transport=json_answer),
           "hook": httpx.Client(transport=spendlog.LoggingTransport(json_answer, app="bench"))}
    mem_url = "http://upstream.test/v1/chat/completions"
    call_times(mem, mem_url, auth, CHAT, 200)
    t = call_times(mem, mem_url, auth, CHAT, args.calls * 2)
    bare, hook = statistics.median(t["bare"]), statistics.median(t["hook"])
    rows.append(("memory, chat completion", f"{us(bare)} µs", f"{us(hook)} µs", f"{us(hook - bare)} µs/call"))

    # the same with records going to a list: the hook's own CPU, without the writer thread's
    assert spendlog.flush(60)
    kept: list[dict] = []
    real_submit = writer.submit
    writer.submit = lambda record, url=None: kept.append(record)
    try:
        t = call_times(mem, mem_url, auth, CHAT, args.calls * 2)
    finally:
        writer.submit = real_submit
    bare, hook = statistics.median(t["bare"]), statistics.median(t["hook"])
    rows.append(("memory, chat completion, records to a list", f"{us(bare)} µs", f"{us(hook)} µs",
                 f"{us(hook - bare)} µs/call"))

    stream_answer = Canned(200, [(b"content-type", b"text/event-stream")], events)
    mem = {"bare": httpx.Client(transport=stream_answer),
           "hook": httpx.Client(transport=spendlog.LoggingTransport(stream_answer, app="bench"))}
    per_side = {"bare": [], "hook": []}
    for i in range(args.streams * 2):
        for name in (("bare", "hook") if i % 2 == 0 else ("hook", "bare")):
            secs, reads = stream_time(mem[name], mem_url, auth, stream_body)
            per_side[name].append(secs)
    sb, sh = statistics.median(per_side["bare"]), statistics.median(per_side["hook"])
    n = len(events)
    rows.append((f"memory, stream of {n:,} events, one read each", f"{us(sb / n)} µs/chunk", f"{us(sh / n)} µs/chunk",
                 f"{us((sh - sb) / n)} µs/chunk"))

    assert spendlog.flush(60)
    # calibration: a fixed pure-CPU job, to compare runs on busy or other machines
    answer = raw.content
    calib = min(timeit.repeat(lambda: json.loads(answer), number=2000, repeat=5)) / 2000
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"httpx {httpx.__version__}; load average {os.getloadavg()[0]:.1f} (1 min) at the end; "
          f"calibration: json.loads of the {len(answer)}-byte chat answer = {us(calib)} µs")
    print("| setup | bare | hook | added |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("targets: <= 50 µs added per call, <= 2 µs added per streamed chunk (median)")
    print(json.dumps({"calls_per_side": args.calls, "chunks_per_stream": args.chunks, "streams_per_side": args.streams}))


if __name__ == "__main__":
    main()
