"""Child processes that mcgw (and its test bed) start in their own process group, with their output in a log.

Each child gets a session of its own, so stopping it signals exactly it and what it spawned, never
anything looked up by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# Every LoggedProcess not yet stopped, so that an immediate exit (a second stop signal) can kill them all:
# each lives in a process group of its own and would otherwise outlive this process.
_running: dict[int, subprocess.Popen[bytes]] = {}


def stop_process_group(popen: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited after ``grace`` seconds.

    The child must have been started with ``start_new_session=True``, so the group is exactly it and
    what it spawned.
    """
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(grace)
    except subprocess.TimeoutExpired:
        kill_process_group(popen, grace)


def kill_process_group(popen: subprocess.Popen[bytes], wait: float | None = 10.0) -> None:
    """SIGKILL the child's process group (as a crash would), then reap the child within ``wait`` seconds.

    ``wait=None`` returns at once, so several children can be killed at the same moment and reaped after.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    if wait is not None:
        popen.wait(wait)


def kill_every_child() -> None:
    """SIGKILL the process group of every LoggedProcess still running, without waiting (an immediate exit)."""
    for popen in list(_running.values()):
        if popen.poll() is None:
            kill_process_group(popen, wait=None)
    _running.clear()


class LoggedProcess:
    """A child in its own process group whose stdout and stderr are appended to ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
        _running[self.popen.pid] = self.popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log ("" if it cannot be read), for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
        stop_process_group(self.popen, grace)
        _running.pop(self.popen.pid, None)
        self._log.close()
