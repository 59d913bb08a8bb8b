"""The generation client: `openai.AsyncOpenAI` against any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp's
server, Ollama), with bounded concurrency, JSON replies validated against a pydantic schema (one repair retry),
token accounting and the response cache.

Retries are the openai client's own: `max_retries` with exponential backoff on 408/409/429/5xx, timeouts and
refused or dropped connections, honouring `Retry-After` (up to 60 s). What still fails after them is returned as
an `Outcome` with a reason, never raised, so a job keeps every good result and counts every failure.

The API key is read from the environment at client creation and lives only in the openai client object: the
endpoint's config carries the *name* of the variable, never its value.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import openai
from pydantic import BaseModel, ValidationError

from engine.errors import BadInputError
from engine.generation.cache import CachedReply, ResponseCache, cache_key

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# How JSON is asked for, strictest first: OpenAI's `json_schema` (also vLLM, Ollama), llama-cpp-python's
# `json_object` with a `schema` (its server refuses `json_schema`), plain `json_object`, or nothing (the prompt
# alone). A server that refuses one is asked with the next, once per client.
JSON_MODES = ("json_schema", "json_object_schema", "json_object", "none")
# A server on this machine needs no key, but the openai client refuses an empty one.
LOCAL_PLACEHOLDER_KEY = "no-key-needed-for-a-local-server"

# Why a request finally failed, after the openai client's retries: the job's failure counts use these names.
REASONS = (
    "rate-limited",
    "server-error",
    "timeout",
    "connection",
    "malformed-response",
    "http-error",
    "not-json",
    "schema",
    "empty",
)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: safe to write into a run's config (no key, only the name of its variable)."""

    base_url: str
    model: str
    api_key_env: str = DEFAULT_KEY_ENV
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 3
    json_mode: str = "json_schema"

    @property
    def host(self) -> str:
        return urlparse(self.base_url).hostname or ""

    def is_local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if key:
            return key
        if self.is_local():
            return LOCAL_PLACEHOLDER_KEY
        raise BadInputError(
            f"no API key for {self.base_url}: set {self.api_key_env} in the environment "
            "(or name another variable with --api-key-env)"
        )

    def check(self) -> None:
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BadInputError(
                f"--base-url {self.base_url!r} is not an http(s) URL such as http://127.0.0.1:8080/v1"
            )
        if self.json_mode not in JSON_MODES:
            raise BadInputError(f"json mode {self.json_mode!r} is not one of {', '.join(JSON_MODES)}")


@dataclass
class Usage:
    """What a job spent and saved: network requests, cache hits, tokens, and failures by reason."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repairs: int = 0
    format_fallbacks: int = 0  # the server refused a response_format: the next mode was used
    failures: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "repairs": self.repairs,
            "format_fallbacks": self.format_fallbacks,
            "failures": dict(self.failures),
        }


@dataclass
class Outcome:
    """One structured request's end: `value` (validated) or `reason` + `detail`; tokens paid for it (a cached
    reply costs nothing now, `cached` says so)."""

    value: dict[str, Any] | None = None
    reason: str | None = None
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None


def failure_reason(exc: Exception) -> str:
    if isinstance(exc, openai.RateLimitError):
        return "rate-limited"
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is one
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return "server-error" if exc.status_code >= 500 else "http-error"
    return "malformed-response"  # a 200 whose body is not a chat completion (APIResponseValidationError, ...)


def _schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    return schema.model_json_schema()


def response_format(mode: str, schema: type[BaseModel]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": _schema_of(schema)},
        }
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": _schema_of(schema)}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def refused_format(reason: str, detail: str) -> bool:
    """The server rejected the request's response_format (a validation error naming it)."""
    return reason in ("server-error", "http-error") and "response_format" in detail


def _validate(content: str, schema: type[BaseModel]) -> tuple[dict[str, Any] | None, str, str]:
    """(value, reason, detail): the reply parsed and checked, or why not."""
    text = content.strip()
    if text.startswith("```"):  # models that wrap JSON in a code fence
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, "not-json", f"not JSON: {exc}"
    try:
        return schema.model_validate(data).model_dump(), "", ""
    except ValidationError as exc:
        return None, "schema", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


class GenerationClient:
    """Structured requests to one endpoint. Use as `async with GenerationClient(...) as client`."""

    def __init__(self, endpoint: Endpoint, cache: ResponseCache | None = None) -> None:
        endpoint.check()
        self.endpoint = endpoint
        self.cache = cache
        self.usage = Usage()
        self.json_mode = endpoint.json_mode  # may step down once a server refuses it (JSON_MODES)
        self._semaphore = asyncio.Semaphore(endpoint.concurrency)
        self._openai = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key(),
            timeout=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
        )

    async def __aenter__(self) -> GenerationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._openai.close()

    async def _reply(
        self, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> tuple[CachedReply | None, bool, str, str]:
        """(reply, cached, reason, detail): from the cache, or one request (with the client's retries)."""
        key = cache_key(self.endpoint.model, messages, params)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.cache_hits += 1
                return hit, True, "", ""
        async with self._semaphore:
            self.usage.requests += 1
            try:
                completion = await self._openai.chat.completions.create(
                    model=self.endpoint.model,
                    messages=messages,  # type: ignore[arg-type]  # plain role/content dicts
                    **params,
                )
                content = completion.choices[0].message.content if completion.choices else None
            except openai.OpenAIError as exc:
                return None, False, failure_reason(exc), f"{type(exc).__name__}: {exc}"[:300]
            except (
                ValueError,
                AttributeError,
                IndexError,
                TypeError,
            ) as exc:  # a body that is not a completion
                return None, False, "malformed-response", f"{type(exc).__name__}: {exc}"[:300]
        if not isinstance(content, str) or not content.strip():
            return None, False, "empty", "the reply had no content"
        usage = completion.usage
        reply = CachedReply(
            content,
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
        )
        self.usage.prompt_tokens += reply.prompt_tokens
        self.usage.completion_tokens += reply.completion_tokens
        if self.cache is not None:
            self.cache.put(key, reply)
        return reply, False, "", ""

    async def text(
        self, messages: list[dict[str, Any]], max_tokens: int = 16, temperature: float = 0.0
    ) -> Outcome:
        """A plain completion (no JSON): `value` is {"text": reply}. For throughput checks and free-text steps."""
        params = {"temperature": temperature, "max_tokens": max_tokens}
        reply, cached, reason, detail = await self._reply(list(messages), params)
        if reply is None:
            self.usage.failures[reason] += 1
            return Outcome(reason=reason, detail=detail[:300])
        tokens = (0, 0) if cached else (reply.prompt_tokens, reply.completion_tokens)
        return Outcome(
            value={"text": reply.content}, prompt_tokens=tokens[0], completion_tokens=tokens[1], cached=cached
        )

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[BaseModel],
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> Outcome:
        """Ask for a JSON object matching `schema`; a reply that is not JSON or fails the schema gets one repair
        request (the reply and the errors sent back). Never raises for the endpoint's failures."""
        base: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if seed is not None:
            base["seed"] = seed
        outcome = Outcome()
        conversation = list(messages)
        for attempt in range(2):
            while True:
                mode = self.json_mode
                fmt = response_format(mode, schema)
                params = {**base, **({"response_format": fmt} if fmt is not None else {})}
                reply, cached, reason, detail = await self._reply(conversation, params)
                if reply is not None or fmt is None or not refused_format(reason, detail):
                    break
                if self.json_mode == mode:  # not already stepped down by a concurrent request
                    self.json_mode = JSON_MODES[JSON_MODES.index(mode) + 1]
                    self.usage.format_fallbacks += 1
            if reply is None:
                outcome.reason, outcome.detail = reason, detail[:300]
                break
            outcome.cached = cached if attempt == 0 else outcome.cached and cached
            if not cached:
                outcome.prompt_tokens += reply.prompt_tokens
                outcome.completion_tokens += reply.completion_tokens
            value, reason, detail = _validate(reply.content, schema)
            if value is not None:
                outcome.value, outcome.reason, outcome.detail = value, None, ""
                outcome.repaired = attempt == 1
                break
            outcome.reason, outcome.detail = reason, detail[:300]
            if attempt == 0:
                self.usage.repairs += 1
                conversation = conversation + [
                    {"role": "assistant", "content": reply.content},
                    {
                        "role": "user",
                        "content": f"That reply is invalid ({detail}). Reply with only a JSON object matching "
                        f"this schema: {json.dumps(_schema_of(schema))}",
                    },
                ]
        if outcome.reason:
            self.usage.failures[outcome.reason] += 1
        return outcome
