"""Child processes that mcgw (and its test bed) start in their own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(grace)
