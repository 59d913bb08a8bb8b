"""Import throughput: the 87,387-question SQuAD train file into a fresh catalog, and the catalog size on disk.

Run: make bench  (or .venv/bin/python bench/import.py [--data-dir DIR] [--repeat N])
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.importing.sources import ImportOptions, load_source  # noqa: E402
from storage.catalog import open_catalog  # noqa: E402
from storage.datasets import write_dataset  # noqa: E402
from storage.workspace import Workspace  # noqa: E402

SQUAD_TRAIN = "squad_v1.0_train/train-v1.0-explorer-reconstructed.json.gz"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    default = os.environ.get(
        "DYNASCOPE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    parser.add_argument("--data-dir", default=default)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = Path(args.data_dir) / SQUAD_TRAIN
    if not source.is_file():
        sys.exit(f"missing {source}: set DYNASCOPE_DATA_DIR to the shared data folder")

    reads, writes, totals, sizes = [], [], [], []
    n = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace(Path(tmp) / "ws").create()
            with open_catalog(ws):  # schema creation is not part of an import
                pass
            start = time.perf_counter()
            spec = load_source(str(source), "squad-train", ImportOptions())
            parsed = time.perf_counter()
            with open_catalog(ws) as con:
                n = write_dataset(con, spec)
            done = time.perf_counter()
            reads.append(parsed - start)
            writes.append(done - parsed)
            totals.append(done - start)
            sizes.append(folder_size(ws.root))
    best = min(totals)
    print(f"import of {source.name}: {n:,} questions, best of {args.repeat}")
    print(f"  read + validate : {min(reads):6.2f} s")
    print(f"  catalog write   : {min(writes):6.2f} s (one transaction)")
    print(f"  total           : {best:6.2f} s  (median {statistics.median(totals):.2f} s)")
    print(f"  throughput      : {n / best:,.0f} questions/s")
    print(
        f"  catalog on disk : {sizes[-1] / 1e6:.1f} MB ({sizes[-1] / n:.0f} bytes/question; source gz {source.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
