"""Several local ranks: the supervisor that starts them with torchrun, and each rank's entry point.

    torchrun --standalone --nproc_per_node 2 -m engine.jobs.rank runs/<run_id>

Rank 0 owns the run's state events; under the job process (`python -m engine.jobs`) the supervisor has already
written `running` (DYNASCOPE_SUPERVISED=1) and only steps in when the ranks could not report a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.training.config import TrainConfig
from engine.training.loop import run_training
from engine.training.stop import StopFlag, failure_message, finish
from storage.artifacts import append_event, read_config, run_state
from storage.joblock import RunBusyError, RunLock, acquire, busy_message

_held: list[RunLock] = []  # the run's lock, when this rank holds it


def evaluate_after_training(run_dir: Path) -> Callable[[Any, TrainConfig, Callable[[], bool]], None]:
    """The hook training calls with its final model: score the evaluation sets exported with the run."""

    def hook(model: Any, cfg: TrainConfig, stop: Callable[[], bool]) -> None:
        from engine.evaluation.scoring import evaluate_exported_sets

        evaluate_exported_sets(run_dir, model, cfg, stop=stop)

    return hook


def evaluate_each_epoch(
    run_dir: Path,
) -> Callable[[Any, TrainConfig, Callable[[], bool]], dict[str, float]] | None:
    """With --eval-each-epoch and --eval sets: the hook training calls after each epoch, scoring the sets with the
    epoch's model (the numbers join the epoch's summary: the run view's evaluation curves)."""
    cfg = read_config(run_dir) or {}
    if not (cfg.get("eval_each_epoch") and cfg.get("eval_sets")):
        return None

    def hook(model: Any, cfg: TrainConfig, stop: Callable[[], bool]) -> dict[str, float]:
        from engine.evaluation.scoring import score_exported_sets_now

        return score_exported_sets_now(run_dir, model, cfg, stop=stop)

    return hook


def supervise_ranks(run_dir: Path, nproc: int, flag: Any) -> str:
    """torchrun starts the ranks; rank 0 writes the terminal state, this only records what the ranks could not."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "engine.jobs.rank",
        str(run_dir),
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "DYNASCOPE_SUPERVISED": "1"})
    forwarded = False
    while proc.poll() is None:
        if flag.requested and not forwarded:  # a SIGTERM to this pid alone still reaches the ranks
            proc.send_signal(signal.SIGTERM)
            forwarded = True
        time.sleep(0.2)
    state = run_state(run_dir)
    if not state.finished:
        finish(
            run_dir,
            "cancelled" if flag.requested else "failed",
            f"torchrun exited with status {proc.returncode}",
        )
        state = run_state(run_dir)
    return state.status


def worker_main(run_dir: str) -> int:
    """Entry point of each torchrun rank."""
    path = Path(run_dir).resolve()
    flag = StopFlag().install()
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0 and not os.environ.get("DYNASCOPE_SUPERVISED"):
        # ranks launched by hand (accelerate launch, torchrun): rank 0 holds the run's lock, as a job process
        # does (under a job process, that process holds it); refused, it exits and torchrun stops the others
        try:
            _held.append(acquire(path))  # held until this process ends
        except RunBusyError as exc:
            print(f"error: {busy_message(path.name, exc.pid, exc.launching)}", file=sys.stderr)
            return 2
        cfg = read_config(path) or {}
        append_event(path, "state", status="running", pid=os.getpid(), n_epochs=cfg.get("epochs"))
    try:
        status = run_training(
            path, flag, after_training=evaluate_after_training(path), after_epoch=evaluate_each_epoch(path)
        )
    except Exception as exc:
        if rank == 0:
            finish(path, "failed", failure_message(exc))
        raise
    if rank == 0:
        finish(path, status, "stopped by a signal; resume with --resume" if status == "cancelled" else None)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: torchrun --nproc_per_node N -m engine.jobs.rank RUN_DIR", file=sys.stderr)
        sys.exit(2)
    from engine.jobs.rank import worker_main as _worker_main  # run in the importable module, not in __main__

    sys.exit(_worker_main(sys.argv[1]))
