"""pytest fixtures of the generation tests (a plugin: `pytest_plugins = ["tests.llm_fixtures"]` in a test module):
the real local llama.cpp server (SmolLM2-135M, one per session, on a free port of 127.0.0.1), the fault proxy in
front of it, and a workspace holding a few real SQuAD dev questions."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.generation.faultproxy import FaultProxy, ProxySettings
from engine.generation.server import LocalServer
from storage.workspace import Workspace

SQUAD_NAME = "squad-few"


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The real server process; a missing llama-cpp-python fails loudly (the Makefile installs it)."""
    log_path = tmp_path_factory.mktemp("llm") / "server.log"
    with open(log_path, "wb") as log:
        server = LocalServer(log=log)
        try:
            server.start()
        except RuntimeError as exc:
            pytest.fail(f"{exc}; its log: {log_path.read_text()[-2000:]}")
        yield server
        server.stop()


@pytest.fixture
def fault_proxy(llm_server: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(
        llm_server.base_url, ProxySettings(retry_after_s=0.3, hang_s=2.0, refused_s=0.4)
    ) as proxy:
        yield proxy


def squad_few(data_dir: Path, n: int) -> dict:
    """The first `n` dev questions, one per paragraph, on short paragraphs (small prompts for a CPU model)."""
    with gzip.open(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", "rt", encoding="utf-8") as fh:
        dev = json.load(fh)
    out: dict = {"version": "1.1", "data": []}
    count = 0
    for article in dev["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if len(para["context"]) > 450 or count >= n:
                continue
            paragraphs.append({"context": para["context"], "qas": para["qas"][:1]})
            count += 1
        if paragraphs:
            out["data"].append({"title": article["title"], "paragraphs": paragraphs})
        if count >= n:
            break
    return out


@pytest.fixture(scope="session")
def squad_few_file(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("squad") / "squad-few.json"
    path.write_text(json.dumps(squad_few(data_dir, 8)))
    return path


@pytest.fixture
def gen_ws(ws: Workspace, squad_few_file: Path) -> Workspace:
    """A fresh workspace with `squad-few` (8 real SQuAD dev questions on 8 short paragraphs)."""
    from engine.importing.sources import ImportOptions, load_source
    from storage.catalog import open_catalog
    from storage.datasets import write_dataset

    spec = load_source(str(squad_few_file), SQUAD_NAME, ImportOptions())
    with open_catalog(ws) as con:
        write_dataset(con, spec)
    return ws
