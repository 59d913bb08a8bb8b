"""`python -m engine.jobs RUN_DIR`: the detached job process (what `train`, `retrain`, `eval --detach` and the
app start). Exit status 0 done, 1 failed, 3 cancelled, 2 not a run folder or its lock held by another process.

The first thing `run_job` does is install the SIGTERM handler; a launcher starts this process with SIGTERM blocked
until then (engine.jobs.process.spawn), so a cancel sent before it is delivered to the handler, not lost."""

from __future__ import annotations

import sys

from engine.errors import BadInputError
from engine.jobs.process import run_job

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m engine.jobs RUN_DIR", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(run_job(sys.argv[1]))
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
