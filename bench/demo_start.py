"""`dynascope --workspace NEW demo` in a real terminal (a pseudo-terminal, 120x40): seconds from the command to the
app's first paint (its footer's `palette` key, what ../shared/tools/fresh-check.sh waits for), and to the demo run
listed as a background job (the real data imported by the app's worker first). Then again on the same workspace
(nothing to import: the run is found and resumed). The demo job is cancelled and the workspace removed at the end.

Target (issue 12): the app within seconds; fresh-check's 60 s after the install step includes the install's tail.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import jobs as engine_jobs  # noqa: E402
from engine.demo import find_demo_run  # noqa: E402
from storage.workspace import Workspace  # noqa: E402

DATA_DIR = Path(os.environ.get("DYNASCOPE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
LIMIT_S = 180.0


def open_demo(root: Path) -> tuple[float | None, float | None]:
    """(seconds to the first paint, seconds to the demo run listed starting or running) of one `demo`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "DYNASCOPE_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_app", "--workspace", str(root), "demo"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(slave)
    screen, painted, listed = b"", None, None
    try:
        while time.perf_counter() - started < LIMIT_S and (painted is None or listed is None):
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    screen = (screen + os.read(master, 1 << 16))[-(1 << 20) :]
                except OSError:  # the app exited
                    break
            if painted is None and b"palette" in screen:
                painted = time.perf_counter() - started
            if listed is None and root.joinpath("runs").is_dir():
                job = find_demo_run(Workspace(root))
                if job is not None and job["status"] in engine_jobs.ACTIVE_STATES:
                    listed = time.perf_counter() - started
            if proc.poll() is not None:
                break
    finally:
        try:
            os.write(master, b"\x11")  # ctrl+q
            proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
        os.close(master)
    return painted, listed


def stop_demo(root: Path) -> None:
    ws = Workspace(root)
    job = find_demo_run(ws)
    if job is None:
        return
    engine_jobs.cancel(ws, job["run_id"])
    deadline = time.monotonic() + 90
    while engine_jobs.job_info(ws, job["run_id"])["alive"] and time.monotonic() < deadline:
        time.sleep(0.5)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="demo-start-"))
    root = folder / "demo-ws"
    try:
        for label in ("new workspace", "same workspace again"):
            painted, listed = open_demo(root)
            shown = f"{painted:.1f} s" if painted is not None else f"not within {LIMIT_S:.0f} s"
            job = f"{listed:.1f} s" if listed is not None else f"not within {LIMIT_S:.0f} s"
            print(
                f"demo, {label}: first paint after {shown}; demo run training in the background after {job}"
            )
            stop_demo(root)
    finally:
        stop_demo(root)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
