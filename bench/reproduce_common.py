"""What the reproduce_*.py benchmarks share: the real `dynascope` command run step by step in one workspace, each
step echoed and timed, and the timings table they end with. (Named reproduce_* so `make bench` skips it too.)"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DYNASCOPE_DATA_DIR", REPO.parent / "shared" / "data"))
# one torch thread per process: on the 2 shared cores of the dev machines two threads were several times slower
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def dynascope() -> list[str]:
    """The installed console script beside this interpreter (what a user runs), else `python -m tui_app`."""
    script = Path(sys.executable).parent / "dynascope"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui_app"]


class Runner:
    """Runs CLI commands in one workspace, echoing each and keeping its wall time."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.timings: list[tuple[str, float]] = []

    def __call__(self, label: str, *args: str) -> Any:
        shown = "dynascope " + " ".join(shlex.quote(a) for a in args)
        print(f"$ {shown}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            [*dynascope(), "--workspace", str(self.workspace), *args],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=REPO,
        )
        seconds = time.monotonic() - t0
        self.timings.append((label, seconds))
        if proc.returncode != 0:
            sys.exit(f"failed (exit {proc.returncode}) after {seconds:.1f} s: {shown}\n{proc.stderr[-4000:]}")
        print(f"  {seconds:.1f} s", flush=True)
        return json.loads(proc.stdout) if "--json" in args else {}

    def steps(self) -> dict[str, list[float]]:
        """Each step's label with the wall times of its runs, in first-run order."""
        steps: dict[str, list[float]] = {}
        for label, seconds in self.timings:
            steps.setdefault(label, []).append(seconds)
        return steps

    def print_timings(self, total_s: float, width: int) -> None:
        print(f"\ntimings (wall, one torch thread per process; total {total_s / 60:.1f} min):")
        for label, secs in self.steps().items():
            print(
                f"  {label:<{width}}{len(secs):>3} x  mean {sum(secs) / len(secs):7.1f} s  total {sum(secs):7.1f} s"
            )
