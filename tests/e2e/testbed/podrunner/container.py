"""One container instance as a local process: started inside the pod's namespaces, logged, stopped.

The process chain is ``setpriv --pdeathsig KILL`` (it dies with the runner), ``nsenter --net`` (the pod's
network namespace), ``unshare`` (new mount, IPC, UTS and PID namespaces; ``--kill-child`` takes the
container down with it) and ``mountns.py`` (mounts, then ``exec`` of the container's command as PID 1).
Each instance is a process group of its own, so a stop signals exactly it. stdout and stderr are read
by the runner and written to the instance's log file in the CRI format, a timestamp per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .logformat import MAX_LINE, encode_lines, encode_record
from .spec import LaunchPlan

LAUNCHER = Path(__file__).with_name("mountns.py")


class StartError(Exception):
    """The container's command could not be started (the runtime's StartError)."""


def spawn_argv(netns_path: str | None, plan_path: Path, python: str = sys.executable) -> list[str]:
    """The process chain that runs ``plan_path`` inside the pod (host network when ``netns_path`` is None)."""
    enter = ["nsenter", f"--net={netns_path}", "--"] if netns_path else []
    return ["setpriv", "--pdeathsig", "KILL", "--", *enter,
            "unshare", "--mount", "--ipc", "--uts", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc",
            "--propagation", "slave", "--",
            python, "-I", "-S", str(LAUNCHER), str(plan_path)]


def plan_json(plan: LaunchPlan, stage: Path, start_fifo: Path) -> dict[str, object]:
    return {"argv": plan.argv, "env": plan.env, "workingDir": plan.working_dir, "hostname": plan.hostname,
            "mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only} for m in plan.mounts],
            "readOnlyRoot": plan.read_only_root,
            "imageFiles": [{"source": m.source, "target": m.target} for m in plan.image_files],
            "stage": str(stage), "startFifo": str(start_fifo)}


class LogWriter:
    """Appends output to a CRI log file, one timestamped record per line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def write(self, stream: str, line: bytes) -> None:
        os.write(self._fd, encode_lines(time.time_ns(), stream, line))

    def write_partial(self, stream: str, piece: bytes) -> None:
        os.write(self._fd, encode_record(time.time_ns(), stream, piece, True))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


async def _pump(reader: asyncio.StreamReader, stream: str, log: LogWriter) -> None:
    buffer = b""
    while chunk := await reader.read(65536):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            log.write(stream, line)
        while len(buffer) > MAX_LINE:
            log.write_partial(stream, buffer[:MAX_LINE])
            buffer = buffer[MAX_LINE:]
    if buffer:
        log.write(stream, buffer)


class ContainerProcess:
    """A started container instance."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.env: dict[str, str] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._log: LogWriter | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else 0

    async def start(self, plan: LaunchPlan, netns_path: str | None, work: Path) -> None:
        """Start the instance; returns once its command runs, raises StartError if it could not be run."""
        plan_path, fifo = _write_plan(work, plan)
        self.env = dict(plan.env)
        self._log = LogWriter(self.log_path)
        started = _FifoReader(fifo)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *spawn_argv(netns_path, plan_path), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
            assert self._process.stdout is not None
            assert self._process.stderr is not None
            self._pumps = [asyncio.create_task(_pump(self._process.stdout, "stdout", self._log)),
                           asyncio.create_task(_pump(self._process.stderr, "stderr", self._log))]
            exited: asyncio.Future[Any] = asyncio.ensure_future(self._process.wait())
            first: list[asyncio.Future[Any]] = [started.result, exited]
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if not started.result.done():  # exited: its error may still be in the FIFO
                await asyncio.wait({started.result}, timeout=0.5)
        finally:
            started.close()
        failure = started.result.result() if started.result.done() else None
        if failure is None or failure:
            await self.wait()
            reason = failure.decode(errors="replace") if failure else \
                f"the container's launcher exited with {self.returncode} before it ran the command"
            raise StartError(reason)

    async def wait(self) -> int:
        """The instance's exit status (negative: killed by that signal)."""
        assert self._process is not None
        code = await self._process.wait()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump
        if self._log is not None:
            self._log.close()
        self.returncode = code
        return code

    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def signal(self, sig: int) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, sig)

    async def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds, as a kubelet stops a container."""
        if self._process is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), max(grace, 0))
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait()

    def init_pid(self) -> int:
        """The host PID of the container's PID 1 (the child ``unshare`` forked)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return 0
        return int(children[0]) if children else 0

    async def exec(self, argv: Sequence[str], seconds: float) -> int:
        """Run ``argv`` inside the container's namespaces with its environment (exec probes and hooks)."""
        target = self.init_pid()
        if not target or not argv:
            return 126
        process = await asyncio.create_subprocess_exec(
            "nsenter", "-t", str(target), "-n", "-m", "-i", "-u", "-p", "--", *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env=self.env, start_new_session=True)
        try:
            return await asyncio.wait_for(process.wait(), seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return 124
        except asyncio.CancelledError:  # a preStop hook cut short: the command goes with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise


def _write_plan(work: Path, plan: LaunchPlan) -> tuple[Path, Path]:
    """The plan file (mode 0600: it holds the container's environment, Secrets included) and a new FIFO."""
    stage = work / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    fifo = work / "start.fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo, 0o600)
    plan_path = work / "plan.json"
    descriptor = os.open(plan_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(plan_json(plan, stage, fifo), out)
    return plan_path, fifo


class _FifoReader:
    """Collects what the launcher writes to the FIFO; ``result`` is done at end-of-file.

    A FIFO reader polls as hung up only once a writer has come and gone (Linux counts writers), so
    opening it before the launcher does is safe.
    """

    def __init__(self, path: Path) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._chunks: list[bytes] = []
        self.result: asyncio.Future[bytes] = self._loop.create_future()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        if data:
            self._chunks.append(data)
        elif not self.result.done():
            self.result.set_result(b"".join(self._chunks))
            self._loop.remove_reader(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
