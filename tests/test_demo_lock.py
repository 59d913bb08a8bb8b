"""Two `dynascope demo` started at once on one workspace: one imports the demo data and starts the demo run, the
other finds them (no dataset imported twice, no second demo run)."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import pytest

from engine import jobs as engine_jobs
from engine.demo import start_demo
from storage.catalog import open_catalog
from storage.datasets import list_datasets
from storage.workspace import Workspace


def test_two_demos_at_once_make_one_import_and_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    (data / "sst2").mkdir(parents=True)
    rows = "".join(f"film number {i} was {'fine' if i % 2 else 'dull'}\t{i % 2}\n" for i in range(24))
    (data / "sst2" / "train.tsv.gz").write_bytes(gzip.compress(f"sentence\tlabel\n{rows}".encode()))
    monkeypatch.setenv("DYNASCOPE_DATA_DIR", str(data))
    ws = Workspace(tmp_path / "ws").create()

    start = threading.Barrier(2)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def demo() -> None:
        start.wait()
        try:
            results.append(start_demo(ws, log=lambda _line: None))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=demo) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        assert len(results) == 2 and results[0] is not None and results[0] == results[1]
        with open_catalog(ws) as con:
            assert [d["name"] for d in list_datasets(con)] == ["sst2-train"]
        assert [j["run_id"] for j in engine_jobs.list_jobs(ws)] == [results[0]]
    finally:
        for job in engine_jobs.list_jobs(ws):
            if job["status"] in engine_jobs.ACTIVE_STATES:
                engine_jobs.cancel(ws, job["run_id"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            j["status"] in engine_jobs.ACTIVE_STATES for j in engine_jobs.list_jobs(ws)
        ):
            time.sleep(0.5)
