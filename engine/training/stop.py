"""How a training job stops, torch-free so the job process can install its SIGTERM handler before it imports
anything heavy: the stop flag (SIGTERM / SIGINT), the error for a loss that stopped being finite, and the one
writer of a run's terminal state."""

from __future__ import annotations

import os
import signal
import traceback
from pathlib import Path
from typing import Any

from engine.training.config import CHECKPOINT
from storage.artifacts import append_event

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Set by SIGTERM / SIGINT; the loop stops at the next step boundary (never mid-write)."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> StopFlag:
        """Handle the stop signals, then unblock them: a launcher starts the job with SIGTERM blocked (the mask
        survives fork and exec), so a cancel sent before this point waits here instead of killing the process
        by the default action, and is delivered to the handler now."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message says at which epoch and step (1-based)."""

    def __init__(self, value: float, epoch: int, step: int, total: int) -> None:
        self.value, self.epoch, self.step, self.total = value, epoch, step, total
        super().__init__(
            f"the training loss became {value} at epoch {epoch + 1}, step {step}/{total}; the run stopped (its "
            "last complete epoch is kept). Lower --lr, raise the warm-up, or check the data for extreme values"
        )


def failure_message(exc: BaseException) -> str:
    """The message a failed run ends with: the error, and where it came from unless it says so itself."""
    if isinstance(exc, TrainingDivergedError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"


def finish(run_dir: Path, status: str, message: str | None = None) -> None:
    """Write the terminal state; a finished run no longer needs its resume checkpoint."""
    fields_ = {"message": message} if message else {}
    append_event(run_dir, "state", status=status, pid=os.getpid(), **fields_)
    if status == "done":
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
