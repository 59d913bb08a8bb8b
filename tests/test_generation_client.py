"""The generation client against the real local llama.cpp server, directly and through the fault proxy: JSON
replies validated against a schema, the cache, and every fault of the proxy ending as a kept result (retried by the
openai client) or a failure counted with its reason."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel

from engine.generation.cache import ResponseCache
from engine.generation.client import Endpoint, GenerationClient
from engine.generation.faultproxy import FaultProxy
from engine.generation.server import LocalServer

pytest_plugins = ["tests.llm_fixtures"]  # llm_server, fault_proxy

LLAMA_CPP_JSON = "json_object_schema"  # what llama.cpp's server takes (it refuses OpenAI's json_schema)


class Capital(BaseModel):
    city: str
    country: str


def ask(i: int, marker: str = "") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Reply with JSON only."},
        {"role": "user", "content": f"Name a capital city and its country. Example {i}. {marker}"},
    ]


def test_structured_reply_and_cache(llm_server: LocalServer, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    endpoint = Endpoint(
        base_url=llm_server.base_url, model=llm_server.model, concurrency=2, json_mode=LLAMA_CPP_JSON
    )

    async def twice() -> tuple:
        async with GenerationClient(endpoint, cache) as client:
            first = await client.structured(ask(1), Capital, max_tokens=24)
            second = await client.structured(ask(1), Capital, max_tokens=24)
            return first, second, client.usage

    first, second, usage = asyncio.run(twice())
    assert first.ok, first.detail  # the schema-constrained reply parses and validates
    assert set(first.value) == {"city", "country"} and first.value["city"].strip()
    assert first.prompt_tokens > 0 and first.completion_tokens > 0 and not first.cached
    assert second.value == first.value and second.cached and second.prompt_tokens == 0
    assert usage.requests == 1 and usage.cache_hits == 1
    cache.close()
    reopened = ResponseCache(tmp_path / "cache.sqlite")  # the reply outlives the process's connection
    assert len(reopened) == 1


def test_every_fault_kept_or_counted(fault_proxy: FaultProxy, llm_server: LocalServer) -> None:
    """Transient faults (once) are retried by the openai client and end as good results; permanent ones (every
    attempt) end as failures with their reason; the rest are untouched."""
    transient = {"T429": "429", "T500": "500", "THANG": "hang", "TREFUSED": "refused", "TSCHEMA": "schema"}
    permanent = {
        "P500": ("500", "server-error"),
        "P429": ("429", "rate-limited"),
        "PMALFORMED": ("malformed", "malformed-response"),
        "PSCHEMA": ("schema", "schema"),
    }
    for marker, fault in transient.items():
        fault_proxy.add(fault, marker, times=1)
    for marker, (fault, _) in permanent.items():
        fault_proxy.add(fault, marker, times=None)
    markers = [*transient, *permanent, "OK1", "OK2", "OK3"]
    endpoint = Endpoint(
        base_url=fault_proxy.base_url,
        model=llm_server.model,
        concurrency=3,
        timeout_s=5.0,  # the server answers one request at a time: a queued request waits for the others
        max_retries=2,
        json_mode=LLAMA_CPP_JSON,
    )

    async def run_all() -> tuple:
        async with GenerationClient(endpoint) as client:
            outcomes = await asyncio.gather(
                *(client.structured(ask(i, m), Capital, max_tokens=24) for i, m in enumerate(markers))
            )
            return dict(zip(markers, outcomes)), client.usage

    fault_proxy.settings.hang_s = 6.0  # past the client's timeout
    outcomes, usage = asyncio.run(run_all())
    for marker in [*transient, "OK1", "OK2", "OK3"]:
        assert outcomes[marker].ok, (marker, outcomes[marker].reason, outcomes[marker].detail)
    assert outcomes["TSCHEMA"].repaired  # the schema failure was answered by the one repair request
    for marker, (_, reason) in permanent.items():
        assert not outcomes[marker].ok and outcomes[marker].reason == reason, (marker, outcomes[marker])
    assert usage.failures == Counter(reason for _, reason in permanent.values())
    actions = Counter(entry.action for entry in fault_proxy.log)
    assert actions["hang"] == 1 and actions["refused"] >= 1 and actions["malformed"] >= 1


def test_retry_after_is_honoured(fault_proxy: FaultProxy, llm_server: LocalServer) -> None:
    fault_proxy.settings.retry_after_s = 1.2  # longer than the client's own first backoff (0.5 s)
    fault_proxy.add("429", "RETRYAFTER", times=1)
    endpoint = Endpoint(
        base_url=fault_proxy.base_url, model=llm_server.model, max_retries=2, json_mode=LLAMA_CPP_JSON
    )

    async def one() -> object:
        async with GenerationClient(endpoint) as client:
            return await client.structured(ask(0, "RETRYAFTER"), Capital, max_tokens=24)

    assert asyncio.run(one()).ok  # type: ignore[attr-defined]
    limited, retried = fault_proxy.log[0], fault_proxy.log[1]
    assert limited.action == "429" and retried.action == "forwarded" and retried.body_sha == limited.body_sha
    assert retried.at - limited.at >= 1.2


def test_refused_response_format_steps_down(llm_server: LocalServer) -> None:
    """OpenAI's json_schema (the default) is refused by llama.cpp's server: the client steps down to the form it
    takes, once, and the reply still validates."""
    endpoint = Endpoint(base_url=llm_server.base_url, model=llm_server.model, max_retries=0)

    async def two() -> tuple:
        async with GenerationClient(endpoint) as client:
            outcomes = [await client.structured(ask(i), Capital, max_tokens=24) for i in (7, 8)]
            return outcomes, client

    outcomes, client = asyncio.run(two())
    assert all(o.ok for o in outcomes), outcomes
    assert client.json_mode == LLAMA_CPP_JSON and client.usage.format_fallbacks == 1
    assert client.usage.requests == 3  # the refused one, then one per question


def test_llm_serve_prints_its_base_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`dynascope llm serve --port P`: the base URL is the one line on stdout, the endpoint serves smollm2, and a
    SIGTERM stops the server with the command."""
    import json
    import signal
    import subprocess
    import sys
    import urllib.request

    from engine.generation.server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_app", "llm", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/v1", proc.stderr.read() if proc.poll() is not None else ""
        with urllib.request.urlopen(url + "/models", timeout=10) as resp:
            assert [m["id"] for m in json.load(resp)["data"]] == ["smollm2"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if (
            proc.poll() is None
        ):  # SIGTERM first: the command stops its llama.cpp server (a SIGKILL orphans it)
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    with pytest.raises(ConnectionRefusedError):  # the llama.cpp server went with the command
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
