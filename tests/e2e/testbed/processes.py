"""Start and stop the test bed's child processes, each in its own process group, with its log on disk.

Teardown stops exactly the processes this module started: it signals each one's own process group,
and never looks processes up by name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mcgw.support.netutil import free_port
from mcgw.support.processes import LoggedProcess

__all__ = ["ManagedProcess", "free_port", "wait_until"]


class ManagedProcess(LoggedProcess):
    """A child process whose output goes to a log file, and which dies with the test bed."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        super().__init__(name, argv, log_path, env={**os.environ, **(env or {})}, cwd=cwd)

    def log_tail(self, lines: int = 40) -> str:
        return super().log_tail(lines)


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               process: ManagedProcess | None = None, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail with the process's log tail if it died or time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode} while waiting for {what}:\n"
                               f"{process.log_tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            tail = f"\n{process.name} log:\n{process.log_tail()}" if process else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(interval)
