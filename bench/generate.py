"""Generation throughput: requests/s and completion tokens/s against the local llama.cpp server at concurrency 1
and 8, directly and through the fault proxy adding 300 ms to every reply (a remote API's shape). Through the proxy,
concurrency 8 should reach at least 6x the requests/s of concurrency 1: the client keeps 8 requests in flight.

Completions are kept tiny (`--max-tokens`, default 2, plain text) so the local server's own time s is small against
the 300 ms: the local server answers one request at a time, so through the proxy the ratio cannot pass
(300 ms + s) / s. On a busy shared machine s swings widely (a lone request waits for an idle server to be scheduled
again; kept busy, it is faster), so concurrency 8 gains directly too; the script prints s as measured kept busy. `--structured` measures JSON-schema replies instead (the job's path).

Run: make bench  (or .venv/bin/python bench/generate.py [--requests N])
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.generation.client import Endpoint, GenerationClient  # noqa: E402
from engine.generation.faultproxy import FaultProxy, ProxySettings  # noqa: E402
from engine.generation.server import LocalServer  # noqa: E402


class Number(BaseModel):
    n: int


async def measure(
    base_url: str, model: str, concurrency: int, n_requests: int, tag: str, max_tokens: int, structured: bool
) -> tuple[float, float]:
    """(requests/s, completion tokens/s) for `n_requests` distinct tiny requests (no cache: each one is paid)."""
    endpoint = Endpoint(
        base_url=base_url,
        model=model,
        concurrency=concurrency,
        timeout_s=120,
        max_retries=0,
        json_mode="json_object_schema",  # llama.cpp's server form (it refuses json_schema)
    )
    async with GenerationClient(endpoint, cache=None) as client:
        prompts = [
            [{"role": "user", "content": f"Reply with the number {i} as n. ({tag})"}]
            for i in range(n_requests)
        ]
        started = time.perf_counter()
        if structured:
            calls = [client.structured(p, Number, max_tokens=max_tokens) for p in prompts]
        else:
            calls = [client.text(p, max_tokens=max_tokens) for p in prompts]
        outcomes = await asyncio.gather(*calls)
        elapsed = time.perf_counter() - started
    failed = sum(not o.ok for o in outcomes)
    if failed:
        print(f"  ({failed} of {n_requests} replies failed: {dict(client.usage.failures)})")
    return n_requests / elapsed, client.usage.completion_tokens / elapsed


def report(label: str, one: tuple[float, float], eight: tuple[float, float]) -> None:
    print(f"{label}")
    print(f"  concurrency 1: {one[0]:6.2f} requests/s  {one[1]:7.1f} tokens/s")
    print(f"  concurrency 8: {eight[0]:6.2f} requests/s  {eight[1]:7.1f} tokens/s")
    print(f"  ratio (8 vs 1): {eight[0] / one[0]:.2f}x requests/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the proxy adds to every reply")
    parser.add_argument("--max-tokens", type=int, default=2, help="completion tokens per request")
    parser.add_argument("--structured", action="store_true", help="JSON-schema replies (the job's path)")
    args = parser.parse_args()
    with LocalServer() as server:

        def run(url: str, concurrency: int, tag: str, n: int = args.requests) -> tuple[float, float]:
            return asyncio.run(
                measure(url, server.model, concurrency, n, tag, args.max_tokens, args.structured)
            )

        run(server.base_url, 1, "warm-up", 2)
        direct = [run(server.base_url, c, "direct") for c in (1, 8)]
        busy_ms = 1000 / direct[1][0]  # the server's own time per request while it is kept busy
        report(f"local server {server.base_url} ({server.model}, llama.cpp)", direct[0], direct[1])
        with FaultProxy(server.base_url, ProxySettings(latency_s=args.latency)) as proxy:
            slow = [run(proxy.base_url, c, "proxy") for c in (1, 8)]
        report(f"through the proxy adding {args.latency * 1000:.0f} ms per reply", slow[0], slow[1])
        ratio = slow[1][0] / slow[0][0]
        print(f"target: >= 6x requests/s at concurrency 8 through the proxy: {ratio:.2f}x")
        print(
            f"(the server alone, kept busy: {busy_ms:.0f} ms a request; {args.max_tokens} completion tokens each)"
        )


if __name__ == "__main__":
    main()
