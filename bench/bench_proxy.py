"""What `spendlog proxy` adds to a call: latency, throughput and time to first token, proxy vs direct.

    python bench/bench_proxy.py                      # concurrency 1, 16, 64, 256 + streams
    python bench/bench_proxy.py --quick              # fewer requests
    python bench/bench_proxy.py --stacks             # also: which server/client pair to build on
    python bench/bench_proxy.py --pin                # fake + load on CPU 0, proxy on CPU 1 (taskset)
    python bench/bench_proxy.py --workers 2          # also: `spendlog proxy --workers 2` beside one worker

Three processes, as in real use the client, the proxy and the upstream are three programs:
the fake upstream (`spendlog fake-upstream --latency-ms 20`), the proxy (`spendlog proxy`, a
SQLite ledger in a temp dir, every call really recorded), and this script, the load generator
(aiohttp on uvloop, closed loop: C workers each sending their next request when the last one
answered). For each concurrency, direct and proxied runs alternate (direct, proxy, proxy,
direct, ...) so that machine noise hits both sides alike; "added" is proxied minus direct at the
same percentile. Streams: time to the first content event, at concurrency 1 and 16, with the
fake waiting 20 ms before answering and 5 ms between events.

The proxy's CPU time per request (from /proc) is printed too: unlike the latencies it hardly
depends on what else the machine is doing.

On a 2-core machine the three processes compete for the cores: at high concurrency both
direct and proxied runs are CPU-bound, and the proxy's share of the CPU shows up as latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "What is the meaning of life?"}]}
KEY = "sr_bench_" + "0" * 24
HERE = Path(__file__).resolve()


# -- processes ------------------------------------------------------------------------------------

def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"process {proc.args} did not start listening on {port}") from None
            time.sleep(0.05)


def _spawn(cmd: list[str], pattern: str, env: dict, cpu: str | None) -> tuple[subprocess.Popen, int]:
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(pattern, line)
    if not match:
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line.strip()!r}")
    port = int(match.group(1))
    _wait_port(port, proc)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int | list[int]) -> float:
    """User + system CPU seconds of a process (or the sum over several: a supervisor and its workers)."""
    if isinstance(pid, list):
        return sum(_cpu_seconds(p) for p in pid)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spawn_workers(py: str, upstream: str, workers: int, env: dict) -> tuple[subprocess.Popen, int, list[int]]:
    """`spendlog proxy --workers N`; its port and every pid that serves (the supervisor's too)."""
    proc = subprocess.Popen([py, "-m", "spendlog", "proxy", "--port", "0", "--upstream", upstream, "--workers",
                             str(workers)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"127\.0\.0\.1:(\d+)/v1 .*pids ([\d ]+)\)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"spendlog proxy --workers {workers} did not start: {line.strip()!r}")
    port = int(match.group(1))
    _wait_port(port, proc)
    return proc, port, [proc.pid, *map(int, match.group(2).split())]


# -- load -----------------------------------------------------------------------------------------

def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")


async def _load(url: str, concurrency: int, n: int, *, stream: bool = False, headers: dict | None = None) -> dict:
    body = json.dumps({**CHAT, "stream": stream}).encode()
    hdrs = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **(headers or {})}
    lat: list[float] = []
    ttft: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    todo = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal errors
            for _ in todo:
                t0 = time.perf_counter()
                first = None
                try:
                    async with session.post(url, data=body, headers=hdrs) as resp:
                        if stream:
                            async for chunk in resp.content.iter_any():
                                if first is None and b'"delta"' in chunk:
                                    first = time.perf_counter()
                        else:
                            await resp.read()
                        if resp.status != 200:
                            errors += 1
                            kinds[f"HTTP {resp.status}"] = kinds.get(f"HTTP {resp.status}", 0) + 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors += 1
                    kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
                done = time.perf_counter()
                lat.append((done - t0) * 1000)
                if first is not None:
                    ttft.append((first - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"lat": lat, "ttft": ttft, "errors": errors, "kinds": kinds, "rps": n / elapsed}


def _run(url: str, concurrency: int, n: int, **kw) -> dict:
    return asyncio.run(_load(url, concurrency, n, **kw))


def _merge(runs: list[dict]) -> dict:
    lat = [x for r in runs for x in r["lat"]]
    ttft = [x for r in runs for x in r["ttft"]]
    return {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "ttft50": _pct(ttft, 0.5), "ttft99": _pct(ttft, 0.99),
            "rps": sum(r["rps"] for r in runs) / len(runs), "errors": sum(r["errors"] for r in runs),
            "kinds": sorted({k for r in runs for k in r["kinds"]})}


def _errors(side: dict) -> str:
    return f"{side['errors']} ({', '.join(side['kinds'])})" if side["errors"] else "0"


def compare(direct_url: str, proxy_url: str, concurrency: int, n: int, rounds: int, proxy_pid: int | list[int],
            fake_pid: int, **kw) -> tuple[dict, dict]:
    """Alternating direct and proxied runs. Besides latencies, each side gets the CPU time per
    request spent by the fake, by this load generator and (proxied) by the proxy, in µs."""
    _run(direct_url, concurrency, min(n, 4 * concurrency), **kw)  # warm both paths (connections, caches)
    _run(proxy_url, concurrency, min(n, 4 * concurrency), **kw)
    runs: dict[str, list] = {"d": [], "p": []}
    cpu = {side: {"fake": 0.0, "load": 0.0, "proxy": 0.0} for side in "dp"}
    loads = []
    for i in range(rounds):
        order = [("d", direct_url), ("p", proxy_url)] if i % 2 == 0 else [("p", proxy_url), ("d", direct_url)]
        for side, url in order:
            before = (_cpu_seconds(fake_pid), time.process_time(), _cpu_seconds(proxy_pid))
            runs[side].append(_run(url, concurrency, n, **kw))
            after = (_cpu_seconds(fake_pid), time.process_time(), _cpu_seconds(proxy_pid))
            for name, b, a in zip(("fake", "load", "proxy"), before, after):
                cpu[side][name] += a - b
            loads.append(os.getloadavg()[0])
    out = []
    for side in "dp":
        merged = _merge(runs[side])
        merged.update({f"cpu_{k}": v / (n * rounds) * 1e6 for k, v in cpu[side].items()})
        merged["loadavg"] = max(loads)
        out.append(merged)
    return out[0], out[1]


# -- alternative stacks (--stacks): the same minimal pass-through proxy on each server/client pair --

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host",
       "content-length"}


def _serve_stack(name: str, upstream: str) -> None:
    """A minimal pass-through proxy (no recording) on one server/client pair, for --stacks."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server, client = name.split("+")
    state: dict = {}

    async def open_client():
        if client == "aiohttp":
            state["c"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024), auto_decompress=False,
                                               skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))
        else:
            import httpx

            state["c"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=1024,
                                                               max_keepalive_connections=1024), timeout=600)

    async def upstream_stream(method, path, headers, body):
        """Yields the status and headers, then the body chunks."""
        if client == "aiohttp":
            async with state["c"].request(method, upstream + path, data=body, headers=headers,
                                          allow_redirects=False) as r:
                yield r.status, [(k, v) for k, v in r.headers.items() if k.lower() not in HOP]
                async for chunk in r.content.iter_any():
                    yield chunk
        else:
            req = state["c"].build_request(method, upstream + path, content=body, headers=headers)
            r = await state["c"].send(req, stream=True)
            try:
                yield r.status_code, [(k, v) for k, v in r.headers.items() if k.lower() not in HOP]
                async for chunk in r.aiter_raw():
                    yield chunk
            finally:
                await r.aclose()

    if server == "aiohttp":
        from aiohttp import web

        async def handle(request):
            body = await request.read()
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
            gen = upstream_stream(request.method, request.raw_path[3:], headers, body)
            status, out_headers = await gen.__anext__()
            resp = web.StreamResponse(status=status)
            for k, v in out_headers:
                resp.headers.add(k, v)
            await resp.prepare(request)
            async for chunk in gen:
                await resp.write(chunk)
            await resp.write_eof()
            return resp

        async def main():
            await open_client()
            runner = web.ServerRunner(web.Server(handle, handler_cancellation=True, access_log=None))
            await runner.setup()
            await web.SockSite(runner, sock, backlog=4096).start()
            await asyncio.Event().wait()

        import uvloop

        uvloop.run(main())
    else:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import StreamingResponse
        from starlette.routing import Route

        async def proxy_endpoint(request: Request):
            if "c" not in state:
                await open_client()
            body = await request.body()
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
            gen = upstream_stream(request.method, request.url.path[3:], headers, body)
            status, out_headers = await gen.__anext__()
            return StreamingResponse(gen, status_code=status, headers=dict(out_headers))

        app = Starlette(routes=[Route("/{path:path}", proxy_endpoint, methods=["GET", "POST"])])
        config = uvicorn.Config(app, log_level="warning", access_log=False, loop="uvloop", http="httptools",
                                server_header=False, date_header=False, backlog=4096)
        uvicorn.Server(config).run(sockets=[sock])


# -- main -----------------------------------------------------------------------------------------

def _machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per run")
    ap.add_argument("--concurrency", default="1,16,64,256", help="comma-separated concurrency levels")
    ap.add_argument("--rounds", type=int, default=2, help="proxied and direct runs per level (alternating)")
    ap.add_argument("--stacks", action="store_true", help="also compare server/client pairs (minimal proxies)")
    ap.add_argument("--pin", action="store_true", help="taskset: fake and load on CPU 0, proxy on CPU 1")
    ap.add_argument("--latency-ms", type=float, default=20, help="the fake's answer delay")
    ap.add_argument("--workers", type=int, default=1,
                    help="also run `spendlog proxy --workers N` and report its CPU per request beside one worker's")
    ap.add_argument("--serve-stack", help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_stack:
        _serve_stack(args.serve_stack, args.upstream)
        return 0
    if args.pin and not shutil.which("taskset"):
        ap.error("--pin needs taskset (util-linux)")
    if args.pin:
        os.sched_setaffinity(0, {0})

    tmp = tempfile.mkdtemp(prefix="spendlog-bench-proxy-")
    env = {**os.environ, "SPENDLOG_DATA_DIR": tmp, "SPENDLOG_DB_URL": f"sqlite:///{tmp}/bench.db"}
    env.pop("SPENDLOG_PROXY_TOKEN", None)
    py = sys.executable
    fake, fake_port = _spawn([py, "-m", "spendlog", "fake-upstream", "--port", "0", "--latency-ms",
                              str(args.latency_ms)], r":(\d+)/v1", env, "0" if args.pin else None)
    upstream = f"http://127.0.0.1:{fake_port}/v1"
    proxy, proxy_port = _spawn([py, "-m", "spendlog", "proxy", "--port", "0", "--upstream", upstream],
                               r"127\.0\.0\.1:(\d+)/v1", env, "1" if args.pin else None)
    direct_url = f"{upstream}/chat/completions"
    proxy_url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"machine: {_machine()}; load: {os.getloadavg()[0]:.2f} (1-min avg before the run)")
    print(f"fake upstream answers after {args.latency_ms:g} ms; proxy records into SQLite; "
          f"{args.rounds} alternating rounds per side{'; pinned' if args.pin else ''}\n")
    rows = []
    try:
        for c in levels:
            n = max(100 if args.quick else 200, c * (15 if args.quick else 25))
            d, p = compare(direct_url, proxy_url, c, n, args.rounds, proxy.pid, fake.pid)
            rows.append((c, n, d, p))
            print(f"  c={c:<4} done", flush=True)
        print("\n| concurrency | requests/side | direct p50 / p99 ms | proxy p50 / p99 ms | added p50 / p99 ms "
              "| throughput proxy/direct | errors direct / proxy | load avg |")
        print("|---|---|---|---|---|---|---|---|")
        for c, n, d, p in rows:
            print(f"| {c} | {n * args.rounds} | {d['p50']:.2f} / {d['p99']:.2f} | {p['p50']:.2f} / {p['p99']:.2f} "
                  f"| {p['p50'] - d['p50']:+.2f} / {p['p99'] - d['p99']:+.2f} | {p['rps']:.0f} / {d['rps']:.0f} rps "
                  f"({100 * p['rps'] / d['rps']:.0f}%) | {_errors(d)} / {_errors(p)} | {p['loadavg']:.1f} |")
        print("\nCPU time per request, µs (direct: fake + load generator; proxied: the same + the proxy). With the "
              "cores saturated, throughput proxy/direct can be at most direct CPU / proxied CPU.")
        print("\n| concurrency | direct: fake + load | proxied: fake + load + proxy | ceiling proxy/direct |")
        print("|---|---|---|---|")
        for c, n, d, p in rows:
            dc, pc = d["cpu_fake"] + d["cpu_load"], p["cpu_fake"] + p["cpu_load"] + p["cpu_proxy"]
            print(f"| {c} | {d['cpu_fake']:.0f} + {d['cpu_load']:.0f} = {dc:.0f} | {p['cpu_fake']:.0f} + "
                  f"{p['cpu_load']:.0f} + {p['cpu_proxy']:.0f} = {pc:.0f} | {100 * dc / pc:.0f}% |")
        for c, n, d, p in rows:
            if c == 64:
                checks = [("added p50 <= 1 ms", p["p50"] - d["p50"] <= 1), ("added p99 <= 10 ms", p["p99"] - d["p99"] <= 10),
                          ("throughput >= 90% of direct", p["rps"] >= 0.9 * d["rps"]),
                          ("zero errors", d["errors"] + p["errors"] == 0)]
                print("\ntargets at concurrency 64: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks))

        if args.workers > 1:
            _workers_section(py, upstream, direct_url, proxy_url, args, env, proxy.pid, fake.pid, levels)

        print("\nstreams (fake: 20 ms before the first event, then 5 ms between events, 10 content events)")
        print("\n| concurrency | direct TTFT p50 / p99 ms | proxy TTFT p50 / p99 ms | added TTFT p50 / p99 ms "
              "| errors direct / proxy |")
        print("|---|---|---|---|---|")
        for c in (1, 16):
            n = 60 if args.quick else 150
            d, p = compare(direct_url, proxy_url, c, n, args.rounds, proxy.pid, fake.pid, stream=True,
                              headers={"X-Fake-Chunk-Delay-Ms": "5", "X-Fake-Chunks": "10"})
            print(f"| {c} | {d['ttft50']:.2f} / {d['ttft99']:.2f} | {p['ttft50']:.2f} / {p['ttft99']:.2f} "
                  f"| {p['ttft50'] - d['ttft50']:+.2f} / {p['ttft99'] - d['ttft99']:+.2f} | {_errors(d)} / {_errors(p)} |")

        if args.stacks:
            print("\nserver/client pairs (minimal pass-through proxies, nothing recorded), concurrency 64")
            print("\n| stack | added p50 / p99 ms | throughput proxy/direct | errors direct / proxy | CPU µs/req |")
            print("|---|---|---|---|---|")
            for stack in ("aiohttp+aiohttp", "starlette+aiohttp", "starlette+httpx"):
                alt, alt_port = _spawn([py, str(HERE), "--serve-stack", stack, "--upstream", upstream], r"PORT (\d+)",
                                       env, "1" if args.pin else None)
                try:
                    n = 15 * 64 if args.quick else 40 * 64
                    d, p = compare(direct_url, f"http://127.0.0.1:{alt_port}/v1/chat/completions", 64, n,
                                   args.rounds, alt.pid, fake.pid)
                finally:
                    _stop(alt)
                print(f"| {stack} | {p['p50'] - d['p50']:+.2f} / {p['p99'] - d['p99']:+.2f} | "
                      f"{p['rps']:.0f} / {d['rps']:.0f} rps ({100 * p['rps'] / d['rps']:.0f}%) | "
                      f"{_errors(d)} / {_errors(p)} | {p['cpu_proxy']:.0f} |", flush=True)
    finally:
        _stop(proxy)
        _stop(fake)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _workers_section(py: str, upstream: str, direct_url: str, single_url: str, args, env: dict, single_pid: int,
                     fake_pid: int, levels: list[int]) -> None:
    """One worker against `--workers N`, same load, alternating: the proxy processes' own CPU time
    (supervisor + workers, from /proc) per proxied request, and what they add to latency."""
    multi, port, pids = _spawn_workers(py, upstream, args.workers, env)
    try:
        print(f"\n`spendlog proxy --workers {args.workers}` (pids {' '.join(map(str, pids))}) beside one worker")
        print("\n| concurrency | workers | proxy CPU µs/req | added p50 / p99 ms | throughput proxy/direct | errors |")
        print("|---|---|---|---|---|---|")
        for c in levels:
            n = max(100 if args.quick else 200, c * (15 if args.quick else 25))
            for label, url, who in (("1", single_url, single_pid),
                                    (str(args.workers), f"http://127.0.0.1:{port}/v1/chat/completions", pids)):
                d, p = compare(direct_url, url, c, n, args.rounds, who, fake_pid)
                print(f"| {c} | {label} | {p['cpu_proxy']:.0f} | {p['p50'] - d['p50']:+.2f} / {p['p99'] - d['p99']:+.2f} "
                      f"| {p['rps']:.0f} / {d['rps']:.0f} rps ({100 * p['rps'] / d['rps']:.0f}%) | {_errors(p)} |",
                      flush=True)
    finally:
        _stop(multi)


if __name__ == "__main__":
    sys.exit(main())
