"""`dynascope llm serve`: the offline OpenAI-compatible server (SmolLM2-135M through llama.cpp) on 127.0.0.1."""

from __future__ import annotations

import signal
import sys
import time

import click

from engine.cli.common import stderr, user_errors


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(
        signal.SIGTERM, signal.SIG_IGN
    )  # once: a second SIGTERM must not cut the server's stop short
    raise KeyboardInterrupt


@click.group("llm")
def llm_group() -> None:
    """The local LLM used by `dynascope generate` offline."""


@llm_group.command("serve")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="port on 127.0.0.1 (default: a free one)"
)
@click.option(
    "--n-ctx", type=click.IntRange(256, 8192), default=2048, show_default=True, help="context length"
)
@user_errors
def serve_cmd(port: int | None, n_ctx: int) -> None:
    """Serve SmolLM2-135M-Instruct as an OpenAI-compatible endpoint; prints its base URL, runs until Ctrl-C."""
    from engine.generation.server import LocalServer

    server = LocalServer(port=port, n_ctx=n_ctx)
    signal.signal(
        signal.SIGTERM, _interrupt
    )  # `kill PID` stops the server too (never an orphan), like Ctrl-C
    try:
        with stderr.status("starting the llama.cpp server ..."):
            server.start()
        click.echo(server.base_url)  # the one line on stdout: scripts read the URL from it
        sys.stdout.flush()
        stderr.print(
            f"model: {server.model}  (dynascope generate --base-url {server.base_url} --model {server.model} "
            "--json-mode json_object_schema)"
        )
        stderr.print("Ctrl-C stops it")
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    code = server.process.returncode if server.process is not None else 0
    if code not in (0, -signal.SIGTERM, None):
        stderr.print(f"the server exited with status {code}")


COMMANDS = (llm_group,)
