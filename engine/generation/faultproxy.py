"""A fault-injecting HTTP proxy for an OpenAI-compatible server (a development tool: the fault tests and
bench/generate.py put it in front of the real local server).

Every request is forwarded to the upstream server unless a rule picks it for a fault:

    429        "429 Too Many Requests" with `Retry-After: <retry_after_s>`
    500        "500 Internal Server Error"
    hang       no reply for `hang_s` (past the client's timeout), then the connection is closed
    malformed  "200 OK" whose body is truncated JSON
    refused    the proxy stops listening for `refused_s` (new connections are refused) and drops this one
    schema     "200 OK", a well-formed chat completion whose content is valid JSON failing any real schema

A rule matches requests whose body contains `match` ("" matches all) and fires `times` times (None: always).
`latency_s` is added to every forwarded reply (a remote API's shape). `log` records each request's body hash
and what was done with it, so a test can tell which requests reached the upstream server.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULTS = ("429", "500", "hang", "malformed", "refused", "schema")


@dataclass
class FaultRule:
    fault: str
    match: str = ""
    times: int | None = 1

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULTS}")


@dataclass
class Logged:
    body_sha: str
    action: str  # "forwarded" or a fault name
    status: int
    at: float  # time.monotonic() when the request arrived
    body: bytes = field(default=b"", repr=False)


@dataclass
class ProxySettings:
    latency_s: float = 0.0
    retry_after_s: float = 1.0
    hang_s: float = 5.0
    refused_s: float = 1.0
    rules: list[FaultRule] = field(default_factory=list)


def body_sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class FaultProxy:
    """Listens on 127.0.0.1:`port` (a free one by default) and forwards to `upstream` (a base URL such as
    http://127.0.0.1:8080/v1); `base_url` is the same path on the proxy."""

    def __init__(self, upstream: str, settings: ProxySettings | None = None, port: int = 0) -> None:
        parsed = urlparse(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.path_prefix = parsed.path.rstrip("/")
        self.settings = settings or ProxySettings()
        self.log: list[Logged] = []
        self.auth_seen: set[str] = set()  # Authorization headers received (in memory only: tests check keys)
        self._lock = threading.Lock()
        self._refused_until = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self._stopped = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    # ---- rules ------------------------------------------------------------------------------------------

    def add(self, fault: str, match: str = "", times: int | None = 1) -> None:
        with self._lock:
            self.settings.rules.append(FaultRule(fault, match, times))

    def pick_fault(self, body: bytes) -> str | None:
        text = body.decode("utf-8", "replace")
        with self._lock:
            for rule in self.settings.rules:
                if rule.times == 0 or (rule.match and rule.match not in text):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule.fault
        return None

    def record(self, body: bytes, action: str, status: int, at: float) -> None:
        with self._lock:
            self.log.append(Logged(body_sha(body), action, status, at, body))

    def forwarded_shas(self) -> list[str]:
        with self._lock:
            return [e.body_sha for e in self.log if e.action == "forwarded" and e.status == 200]

    # ---- serving ----------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def refuse_for(self, seconds: float) -> None:
        """Stop listening (connections refused) for `seconds`, then listen again on the same port."""
        with self._lock:
            self._refused_until = time.monotonic() + seconds
            server = self._server
        if server is None:
            return

        def cycle() -> None:
            server.shutdown()
            server.server_close()
            time.sleep(seconds)
            if not self._stopped:
                self._listen()

        threading.Thread(target=cycle, daemon=True).start()

    def refusing(self) -> bool:
        with self._lock:
            return time.monotonic() < self._refused_until

    def stop(self) -> None:
        self._stopped = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read the proxy's log instead
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self._write(status, body, headers)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout): nothing to tell
            self.close_connection = True

    def _write(self, status: int, body: bytes, headers: dict[str, str] | None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._forward(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._forward(self.rfile.read(length) if length else b"")

    def _forward(self, body: bytes) -> None:
        owner = self.owner
        settings = owner.settings
        at = time.monotonic()
        with owner._lock:
            owner.auth_seen.add(self.headers.get("Authorization") or "")
        if owner.refusing():  # a kept-alive connection during a refusal window: dropped like the rest
            owner.record(body, "refused", 0, at)
            self._drop()
            return
        fault = owner.pick_fault(body) if self.command == "POST" else None
        if fault == "refused":
            owner.record(body, fault, 0, at)
            owner.refuse_for(settings.refused_s)
            self._drop()
            return
        if fault == "hang":
            owner.record(body, fault, 0, at)
            time.sleep(settings.hang_s)
            self._drop()
            return
        if fault == "429":
            owner.record(body, fault, 429, at)
            error = {"error": {"message": "rate limited by the fault proxy", "type": "rate_limit"}}
            self._send(429, json.dumps(error).encode(), {"Retry-After": f"{settings.retry_after_s:g}"})
            return
        if fault == "500":
            owner.record(body, fault, 500, at)
            self._send(500, b'{"error": {"message": "injected server error", "type": "server_error"}}')
            return
        if fault == "malformed":
            owner.record(body, fault, 200, at)
            self._send(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index')
            return
        if fault == "schema":
            owner.record(body, fault, 200, at)
            self._send(200, json.dumps(_completion('{"unexpected": "field"}')).encode())
            return
        status, headers, reply = self._upstream(body)
        if settings.latency_s:
            time.sleep(settings.latency_s)
        owner.record(body, "forwarded", status, at)
        self._send(status, reply, headers)

    def _upstream(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        owner = self.owner
        conn = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=300)
        try:
            conn.request(
                self.command, self.path, body=body or None, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {}, data
        except OSError as exc:
            return 502, {}, json.dumps({"error": {"message": f"upstream unreachable: {exc}"}}).encode()
        finally:
            conn.close()


def _completion(content: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fault-proxy",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
