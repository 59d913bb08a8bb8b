"""One live job per run folder: an exclusive `flock` on `runs/<id>/job.lock`, which the OS releases when the last
process holding it ends, kill -9 included.

The launcher takes the lock before it starts the job process and hands the locked descriptor to it (`pass_fds`,
its number in `DYNASCOPE_JOB_LOCK_FD`), so no second start can slip in between launch and job; the launcher then
closes its copy. Nobody ever unlocks explicitly (LOCK_UN): both copies share one open file description, so an
unlock by either would release the other's lock too; closing the last copy is what releases it. A job started by
hand takes the lock itself. The file holds the holder's pid (with ` launching` while a launcher holds it), for the
message that refuses a second start.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from storage.artifacts import pid_alive

LOCK_FILE = "job.lock"
FD_ENV = "DYNASCOPE_JOB_LOCK_FD"


def lock_path(run_dir: Path) -> Path:
    return run_dir / LOCK_FILE


class RunBusyError(Exception):
    """Another process holds the run's lock; `pid` is the holder's as its lock file says (None if unreadable)."""

    def __init__(self, run_dir: Path, pid: int | None, launching: bool = False) -> None:
        self.run_dir, self.pid, self.launching = run_dir, pid, launching
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{run_dir} is locked by {who}" + (" (starting its job)" if launching else ""))


def busy_message(run_id: str, pid: int | None, launching: bool = False) -> str:
    """What a refused start says (exit 2 through the CLI)."""
    holder = f"pid {pid}" if pid else "another process"
    if launching:
        holder += ", still starting its job"
    return (
        f"run '{run_id}' is already running ({holder}); one job per run folder: wait for it to end, or stop "
        f"it with `dynascope job cancel {run_id}`"
    )


class RunLock:
    """A held lock: `fd` is the locked descriptor; `close()` gives up this copy (the lock ends with the last)."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self.fd = fd

    def set_holder(self, pid: int, launching: bool = False) -> None:
        """Record who holds the lock (written in place, never emptied first: a reader sees the old or the new pid)."""
        data = f"{pid}{' launching' if launching else ''}\n".encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_holder(run_dir: Path) -> tuple[int | None, bool]:
    """(pid, launching) as the lock file says; (None, False) when it is missing or unreadable."""
    try:
        words = lock_path(run_dir).read_text().split()
        return int(words[0]), "launching" in words[1:]
    except (OSError, ValueError, IndexError):
        return None, False


def _holder_for_message(run_dir: Path, wait_s: float) -> tuple[int | None, bool]:
    """The holder to name: a launcher writes its job's pid a few milliseconds after taking the lock, and a new holder
    overwrites the pid of a dead one just after, so wait briefly for a live job's pid before naming what is there."""
    deadline = time.monotonic() + wait_s
    while True:
        pid, launching = read_holder(run_dir)
        if (pid is not None and not launching and pid_alive(pid)) or time.monotonic() >= deadline:
            return pid, launching
        time.sleep(0.02)


def acquire(run_dir: Path, *, launching: bool = False, wait_s: float = 2.0) -> RunLock:
    """Take the run's lock without waiting, recording this process as its holder; RunBusyError (naming the holder)
    when another process holds it. OSError when the run folder cannot hold a lock file (read-only, missing)."""
    fd = os.open(lock_path(run_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunBusyError(run_dir, *_holder_for_message(run_dir, wait_s)) from None
    except BaseException:
        os.close(fd)
        raise
    lock = RunLock(run_dir, fd)
    lock.set_holder(os.getpid(), launching=launching)
    return lock


def adopt_or_acquire(run_dir: Path) -> RunLock:
    """The job process's lock: the descriptor its launcher handed over (`DYNASCOPE_JOB_LOCK_FD`, removed from the
    environment so the job's own children do not see it), or, for a job started by hand, a fresh lock. Raises
    RunBusyError when another process holds it."""
    raw = os.environ.pop(FD_ENV, None)
    if raw:
        try:
            fd = int(raw)
            ours, there = os.fstat(fd), os.stat(lock_path(run_dir))
            if (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already ours: succeeds at once
                os.set_inheritable(fd, False)
                lock = RunLock(run_dir, fd)
                lock.set_holder(os.getpid())
                return lock
        except (ValueError, OSError):
            pass  # not a descriptor of this run's lock file: take the lock as a job started by hand does
    return acquire(run_dir)


@contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if missing) for the block, waiting for another holder first:
    a check-then-create step (the demo's datasets and run) done by two processes at once then runs one after the
    other. The OS releases it when the holder ends, kill -9 included; job processes do not inherit it (O_CLOEXEC)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
