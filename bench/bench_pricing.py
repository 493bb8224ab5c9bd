"""The price engine's speed on the writer's thread: calls priced per second.

    python bench/bench_pricing.py [--calls 1000000] [--unknown 0.3]
Prices ``--calls`` mixed calls (router-style and plain ids over a few dozen real models, dated and
tiered ones among them, cached and reasoning tokens, a share of unknown models) with one
``PriceBook`` and prints calls/s for ``estimate`` and for ``estimate_and_list_price`` (both
figures, what the writer will do per record), by wall clock and by this process's CPU time (the fair figure on a
shared machine). Target: comfortably above 100,000 calls/s, so pricing never slows the writer.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import datetime, timedelta, timezone

from spendlog.db.pricing import GENAI_PRICES_VERSION, PriceBook

KNOWN = [
    ("openai/gpt-4o-mini", "api.solrouter.io"), ("openai/gpt-4o", "api.solrouter.io"),
    ("anthropic/claude-3.5-sonnet", "api.solrouter.io"), ("google/gemini-2.0-flash-001", "api.solrouter.io"),
    ("meta-llama/llama-3.1-70b-instruct", "api.solrouter.io"), ("openai/o3-mini", "api.solrouter.io"),
    ("deepseek/deepseek-r1", "api.solrouter.io"), ("mistralai/mistral-large", "api.solrouter.io"),
    ("google/gemini-2.5-pro", "api.solrouter.io"), ("anthropic/claude-sonnet-4", "api.solrouter.io"),
    ("gpt-4o-mini", "api.openai.com"), ("gpt-4o-mini-2024-07-18", "api.openai.com"), ("o1", "api.openai.com"),
    ("gpt-4o", "myteam.openai.azure.com"), ("claude-3-5-sonnet-20241022", "api.anthropic.com"),
    ("gemini-1.5-pro", "generativelanguage.googleapis.com"), ("gpt-4.1", "127.0.0.1:8080"),
]
UNKNOWN = [(f"selfhosted/model-{i}", "10.1.2.3:8000") for i in range(20)] + [(f"private-{i}", None) for i in range(10)]


def make_calls(n: int, unknown_share: float, seed: int = 7) -> list[tuple]:
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, tzinfo=timezone.utc)
    calls = []
    for _ in range(n):
        model, upstream = rng.choice(UNKNOWN) if rng.random() < unknown_share else rng.choice(KNOWN)
        prompt = rng.randint(1, 300_000)
        completion = rng.randint(0, 4_000)
        cached = rng.randint(0, prompt) if rng.random() < 0.4 else None
        reasoning = rng.randint(0, completion) if rng.random() < 0.2 else None
        at = start + timedelta(seconds=rng.randint(0, 90 * 86400))
        calls.append((model, upstream, at, prompt, completion, cached, reasoning))
    return calls


def run(book: PriceBook, calls: list[tuple], with_list: bool) -> tuple[float, float, int]:
    price = book.estimate_and_list_price if with_list else book.estimate
    priced = 0
    cpu, started = time.process_time(), time.perf_counter()
    for model, upstream, at, prompt, completion, cached, reasoning in calls:
        got = price(model, upstream=upstream, at=at, prompt_tokens=prompt, completion_tokens=completion,
                    cached_tokens=cached, reasoning_tokens=reasoning)
        priced += (got[0] if with_list else got) is not None
    return time.perf_counter() - started, time.process_time() - cpu, priced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls to price")
    parser.add_argument("--unknown", type=float, default=0.3, help="share of calls to unknown models")
    args = parser.parse_args()
    calls = make_calls(args.calls, args.unknown)
    book = PriceBook()
    warm = time.perf_counter()
    for model, upstream, *_ in {(c[0], c[1]) for c in calls}:
        book.resolve(model, upstream=upstream)
    warm = time.perf_counter() - warm
    rows = []
    for label, with_list in (("estimate", False), ("estimate_and_list_price", True)):
        rows.append((label, *run(book, calls, with_list)))
    print(f"\npricing: {args.calls:,} calls, {args.unknown:.0%} unknown models, genai-prices {GENAI_PRICES_VERSION}, "
          f"{os.cpu_count()} cores; first resolution of {len(KNOWN) + len(UNKNOWN)} ids {warm * 1000:.0f} ms")
    print("| work per call | wall s | calls/s (wall) | CPU s | calls/s (CPU) | µs per call (CPU) | priced |")
    print("|---|---|---|---|---|---|---|")
    for label, wall, cpu, priced in rows:
        print(f"| {label} | {wall:.2f} | {args.calls / wall:,.0f} | {cpu:.2f} | {args.calls / cpu:,.0f} "
              f"| {cpu / args.calls * 1e6:.2f} | {priced:,} |")


if __name__ == "__main__":
    main()
