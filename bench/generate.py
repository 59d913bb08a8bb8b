"""Generation throughput: requests/s and completion tokens/s against the local llama.cpp server at concurrency 1
and 8, directly and through the fault proxy adding 300 ms to every reply (a remote API's shape). Through the proxy,
concurrency 8 should reach at least 6x the requests/s of concurrency 1: the client keeps 8 requests in flight.

Completions are kept tiny (a JSON object with one small number) so the local server's own time is small against
the 300 ms; the local server answers one request at a time, so directly the ratio shows only its batching of
nothing: about 1x.

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
    base_url: str, model: str, concurrency: int, n_requests: int, tag: str
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
            [{"role": "user", "content": f"Reply with a JSON object with the number {i} as n. ({tag})"}]
            for i in range(n_requests)
        ]
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(client.structured(p, Number, max_tokens=8) for p in prompts))
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
    args = parser.parse_args()
    with LocalServer() as server:
        asyncio.run(measure(server.base_url, server.model, 1, 2, "warm-up"))
        direct = [
            asyncio.run(measure(server.base_url, server.model, c, args.requests, "direct")) for c in (1, 8)
        ]
        report(f"local server {server.base_url} ({server.model}, llama.cpp)", direct[0], direct[1])
        with FaultProxy(server.base_url, ProxySettings(latency_s=args.latency)) as proxy:
            slow = [
                asyncio.run(measure(proxy.base_url, server.model, c, args.requests, "proxy")) for c in (1, 8)
            ]
        report(f"through the proxy adding {args.latency * 1000:.0f} ms per reply", slow[0], slow[1])
        ratio = slow[1][0] / slow[0][0]
        print(f"target: >= 6x requests/s at concurrency 8 through the proxy: {ratio:.2f}x")


if __name__ == "__main__":
    main()
