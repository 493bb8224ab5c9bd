"""What the hook (spendlog.LoggingTransport) adds to a call and to each streamed chunk.

    python bench/bench_hook.py [--calls 2000] [--chunks 20000] [--streams 7]

Same run, same client code, bare transport vs hook, calls interleaved (bare, hook, hook, bare...)
so that machine noise hits both sides alike. Two clocks per call: wall time, and the CPU time of
the calling thread (``time.thread_time``), which leaves out the fake upstream (another process),
the writer thread and other processes on a busy machine: the hook's own cost.

- over HTTP: a sync ``httpx.Client`` (keep-alive) against the fake upstream in its own process
  (``spawn_fake_upstream``); medians per call are compared.
- in memory: the same client and hook over an inner transport that answers from memory (a recorded
  fake answer): no network noise. Once more with the records appended to a list instead of going
  to the writer.

Per chunk: a streamed answer of N chunks (zero delay) read with ``iter_raw``; over HTTP the reads
hold many events each, in memory every event is its own read (the worst case for the hook). The
hooked request asks for usage (the hook adds ``stream_options``), so its stream carries the usage
event and a ``"usage":null`` in every chunk, which the hook removes again.
Every hooked call is really recorded (a SQLite ledger in a temp dir, the background writer running).
``--unpriced`` (default 0.3) of the calls are answered with usage but no cost (``X-Fake-No-Cost``, as
OpenAI answers), so the writer estimates them (issue 14): the ledger check at the end counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
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

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes],
                 no_cost: list[bytes] | None = None):
        self.status, self.headers, self.chunks, self.no_cost = status, headers, chunks, no_cost

    def handle_request(self, request):
        chunks = self.no_cost if self.no_cost and request.headers.get("x-fake-no-cost") == "1" else self.chunks
        return httpx.Response(self.status, headers=self.headers, stream=_Chunks(chunks), request=request)

    def close(self):
        pass


class _Chunks(httpx.SyncByteStream):
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)


Samples = dict[str, dict[str, list[float]]]  # side -> clock -> seconds


UNPRICED = 0.3  # share of calls answered without a cost (--unpriced)


def call_times(clients: dict[str, httpx.Client], url: str, headers: dict, body: dict, n: int) -> Samples:
    """Per-call wall and thread-CPU seconds for each client, interleaved ABBA; ``UNPRICED`` of the
    calls (spread evenly) ask for an answer without cost."""
    out: Samples = {name: {"wall": [], "cpu": []} for name in clients}
    names = list(clients)
    no_cost = {**headers, "X-Fake-No-Cost": "1"}
    for i in range(n):
        sent = no_cost if int((i + 1) * UNPRICED) > int(i * UNPRICED) else headers
        for name in names if i % 2 == 0 else names[::-1]:
            w0, c0 = time.perf_counter(), time.thread_time()
            r = clients[name].post(url, headers=sent, json=body)
            r.read()
            out[name]["cpu"].append(time.thread_time() - c0)
            out[name]["wall"].append(time.perf_counter() - w0)
            assert r.status_code == 200
    return out


def stream_times(clients: dict[str, httpx.Client], url: str, headers: dict, body: dict, n: int) -> Samples:
    out: Samples = {name: {"wall": [], "cpu": []} for name in clients}
    names = list(clients)
    for i in range(n):
        for name in names if i % 2 == 0 else names[::-1]:
            w0, c0 = time.perf_counter(), time.thread_time()
            with clients[name].stream("POST", url, headers=headers, json=body) as r:
                for _ in r.iter_raw():
                    pass
            out[name]["cpu"].append(time.thread_time() - c0)
            out[name]["wall"].append(time.perf_counter() - w0)
    return out


def ledger_counts() -> tuple[int, int, int]:
    """Records in the bench's ledger, those with a cost, tokens and no error, and the estimated ones."""
    with sqlite3.connect(f"{_tmp}/bench.db") as db:
        return db.execute("SELECT count(*), count(CASE WHEN cost_usd IS NOT NULL AND total_tokens > 0"
                          " AND error_type IS NULL THEN 1 END), count(CASE WHEN cost_source = 'estimated' THEN 1 END)"
                          " FROM completions").fetchone()


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def row(label: str, samples: Samples, per: int = 1, unit: str = "call") -> tuple[str, ...]:
    cells = [label]
    for clock in ("wall", "cpu"):
        bare = statistics.median(samples["bare"][clock]) / per
        hook = statistics.median(samples["hook"][clock]) / per
        cells += [us(bare), us(hook), f"**{us(hook - bare)}**"]
    return (*cells, f"µs/{unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per side and setup")
    parser.add_argument("--chunks", type=int, default=20000, help="chunks in each long stream")
    parser.add_argument("--streams", type=int, default=7, help="long streams per side")
    parser.add_argument("--unpriced", type=float, default=UNPRICED, help="share of calls answered without a cost")
    args = parser.parse_args()
    globals()["UNPRICED"] = args.unpriced
    rows = []
    stream_body = {**CHAT, "stream": True}
    with spawn_fake_upstream() as fake:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        url = fake.base_url + "/chat/completions"
        clients = {"bare": httpx.Client(transport=httpx.HTTPTransport()),
                   "hook": httpx.Client(transport=spendlog.LoggingTransport(httpx.HTTPTransport(), app="bench"))}
        call_times(clients, url, auth, CHAT, 100)  # warm up connections and caches
        rows.append(row("HTTP, chat completion", call_times(clients, url, auth, CHAT, args.calls)))
        long_headers = {**auth, "X-Fake-Chunks": str(args.chunks)}
        samples = stream_times(clients, url, long_headers, stream_body, args.streams)
        rows.append(row(f"HTTP, stream of {args.chunks + 2:,} chunks", samples, args.chunks + 2, "chunk"))

        # what the fake sends, recorded once, for the in-memory setup
        answer = httpx.post(url, headers=auth, json=CHAT).content
        answer_no_cost = httpx.post(url, headers={**auth, "X-Fake-No-Cost": "1"}, json=CHAT).content
        with httpx.stream("POST", url, headers=long_headers,
                          json={**stream_body, "stream_options": {"include_usage": True}}) as r:
            sse = r.read()
        events = [e + b"\n\n" for e in sse.split(b"\n\n") if e]

    assert spendlog.flush(60)
    json_answer = Canned(200, [(b"content-type", b"application/json")], [answer], [answer_no_cost])
    mem = {"bare": httpx.Client(transport=json_answer),
           "hook": httpx.Client(transport=spendlog.LoggingTransport(json_answer, app="bench"))}
    mem_url = "http://upstream.test/v1/chat/completions"
    call_times(mem, mem_url, auth, CHAT, 200)
    rows.append(row("memory, chat completion", call_times(mem, mem_url, auth, CHAT, args.calls * 2)))
    assert spendlog.flush(60)
    kept: list[dict] = []
    real_submit = writer.Writer.submit
    writer.Writer.submit = lambda self, record: kept.append(record)
    try:
        samples = call_times(mem, mem_url, auth, CHAT, args.calls * 2)
    finally:
        writer.Writer.submit = real_submit
    rows.append(row("memory, chat completion, records to a list", samples))

    stream_answer = Canned(200, [(b"content-type", b"text/event-stream")], events)
    mem = {"bare": httpx.Client(transport=stream_answer),
           "hook": httpx.Client(transport=spendlog.LoggingTransport(stream_answer, app="bench"))}
    samples = stream_times(mem, mem_url, auth, stream_body, args.streams)
    rows.append(row(f"memory, stream of {len(events):,} events, one read each", samples, len(events), "chunk"))

    assert spendlog.flush(60)
    hooked = (100 + args.calls) + args.streams + (200 + args.calls * 2) + args.streams  # not the list run
    stored, priced, estimated = ledger_counts()
    assert stored == priced == hooked, f"ledger holds {stored} records ({priced} priced, no error); expected {hooked}"
    unpriced_calls = sum(1 for n in (100 + args.calls, 200 + args.calls * 2) for i in range(n)
                         if int((i + 1) * UNPRICED) > int(i * UNPRICED))
    assert estimated == unpriced_calls, f"{estimated} estimated records; expected {unpriced_calls}"
    # calibration: a fixed pure-CPU job, to compare runs on busy or other machines
    calib = min(timeit.repeat(lambda: json.loads(answer), number=2000, repeat=5)) / 2000
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"httpx {httpx.__version__}; load average {os.getloadavg()[0]:.1f} (1 min) at the end; "
          f"calibration: json.loads of the {len(answer)}-byte chat answer = {us(calib)} µs")
    print("| setup | wall bare | wall hook | wall added | CPU bare | CPU hook | CPU added | unit |")
    print("|---|---|---|---|---|---|---|---|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print("medians; CPU = the calling thread's CPU time. Targets: <= 50 µs added per call, <= 2 µs per chunk.")
    print(f"ledger: {stored:,} records, every one priced and without error, as many as hooked calls; "
          f"{estimated:,} of them ({estimated / stored:.0%}) answered without cost and estimated by the writer")
    print(json.dumps({"calls_per_side": args.calls, "chunks_per_stream": args.chunks, "streams_per_side": args.streams,
                      "unpriced": UNPRICED}))


if __name__ == "__main__":
    main()
