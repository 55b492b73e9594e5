"""Graceful shutdown as an operator sees it: ``mcgw run`` and ``mcgw standalone`` started as processes and
stopped with SIGTERM or SIGINT.

- ``run``: SIGTERM on the leader releases its Leases, so the standby replica takes over at once instead
  of after the lease duration (15 s here); the process exits 0 and logs each shutdown step.
- ``standalone``: SIGTERM leaves no Envoy, no working directory and no listening port behind, exits 0
  and logs each step; a second signal during a slow shutdown (a long xDS drain) exits at once.
- A background task that crashes stops the composition, and the cleanup still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.aio import client

from mcgw.app.demo import QUICKSTART
from mcgw.app.lifecycle import BackgroundTaskFailed
from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.providers.kubernetes.cluster import api_client_from_kubeconfig
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.processes import ManagedProcess, wait_until

LEASE_DURATION = 15.0
RETRY_PERIOD = 2.0  # the default: a standby watches the Lease between its attempts, so a release wakes it
STANDALONE_STEPS = [
    "shutdown: SIGTERM received, mcgw standalone stopping gracefully",
    "shutdown: the xDS and admin servers stopped accepting connections",
    "shutdown: drained the xDS streams (3 open",
    "shutdown: stopped 3 Envoy(s)",
    "shutdown: removed the working directory ",
    "shutdown: complete in ",
]


class Processes:
    """mcgw processes started by a test; whatever is still running at the end is killed, by PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ManagedProcess] = []
        self.envoy_pids: list[int] = []

    def mcgw(self, name: str, *args: str, env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, [sys.executable, "-m", "mcgw", *args], self.directory / f"{name}.log",
                                 env={"PYTHONUNBUFFERED": "1", **(env or {})})
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            process.stop(grace=1)
        for pid in self.envoy_pids:  # only after a failed test: a passing one leaves none running
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.close()


def _log(process: ManagedProcess) -> str:
    return process.log_path.read_text(errors="replace")


def _exit_code(process: ManagedProcess, within: float) -> int:
    try:
        return process.popen.wait(within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{process.name} still running {within:.0f}s after the signal:\n"
                             f"{process.log_tail()}") from None


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _status(admin_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/status", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


# -- mcgw run ---------------------------------------------------------------------------------------


def _run_config(path: Path, clusterset: ClusterSet, lease_name: str) -> Path:
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(c.kubeconfig), "context": name}
                     for name, c in clusterset.clusters.items()],
        "xds": {"listen": f"127.0.0.1:{free_port()}"},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseName": lease_name, "leaseDuration": LEASE_DURATION, "renewDeadline": 10,
                           "retryPeriod": RETRY_PERIOD},
        "provisioning": {"enabled": False},  # about Leases; tests/e2e/test_provisioning_e2e.py provisions
    }))
    return path


async def _holders(apis: dict[str, client.ApiClient], lease_name: str) -> dict[str, str]:
    holders = {}
    for name, api in apis.items():
        try:
            lease = await client.CoordinationV1Api(api).read_namespaced_lease(lease_name, "kube-system")
        except client.ApiException:
            holders[name] = ""
            continue
        holders[name] = lease.spec.holder_identity or ""
    return holders


def _held_by(process: ManagedProcess, holders: dict[str, str]) -> bool:
    """Every Lease names ``process`` (identities are hostname_pid_random)."""
    return all(f"_{process.pid}_" in holder for holder in holders.values())


async def _until_held_by(apis: dict[str, client.ApiClient], lease_name: str, process: ManagedProcess,
                         within: float) -> float:
    started = time.monotonic()
    while not _held_by(process, await _holders(apis, lease_name)):
        assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
        assert time.monotonic() - started < within, (f"{process.name} did not take every Lease within {within:.0f}s:"
                                                     f" {await _holders(apis, lease_name)}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_sigterm_on_the_leader_hands_its_leases_to_the_standby_at_once(
        clusterset: ClusterSet, processes: Processes, tmp_path: Path) -> None:
    lease_name = f"mcgw-shutdown-{secrets.token_hex(4)}"
    apis = {name: await api_client_from_kubeconfig(c.kubeconfig, name) for name, c in clusterset.clusters.items()}
    try:
        leader = processes.mcgw("leader", "run", "--config", str(_run_config(tmp_path / "a.yaml", clusterset,
                                                                             lease_name)))
        await _until_held_by(apis, lease_name, leader, 60)
        standby = processes.mcgw("standby", "run", "--config", str(_run_config(tmp_path / "b.yaml", clusterset,
                                                                               lease_name)))
        await asyncio.to_thread(wait_until, lambda: "admin server on" in _log(standby), 60,
                                "the standby to start campaigning", standby)
        await asyncio.sleep(1)  # a few looks at the Lease: the standby now knows it as held
        assert _held_by(leader, await _holders(apis, lease_name))

        leader.popen.send_signal(signal.SIGTERM)
        takeover = await _until_held_by(apis, lease_name, standby, LEASE_DURATION * 2)
        print(f"\n[shutdown] Lease takeover after SIGTERM on the leader: {takeover:.2f}s for {len(apis)} clusters "
              f"(lease duration {LEASE_DURATION:g}s, retry period {RETRY_PERIOD:g}s)")
        # Generous for a shared machine, and still proof of the release: without it the standby waits
        # out the whole lease duration.
        assert takeover < LEASE_DURATION / 2
        assert _exit_code(leader, 30) == 0
        log = _log(leader)
        for step in ("shutdown: SIGTERM received, mcgw run stopping gracefully",
                     "shutdown: the xDS and admin servers stopped accepting connections",
                     f"shutdown: released the Lease in cluster(s) {', '.join(sorted(apis))}",
                     "shutdown: drained the xDS streams", "shutdown: complete in "):
            assert step in log, f"{step!r} not logged:\n{log}"
        assert log.index("stopped accepting") < log.index("released the Lease in") < log.index("drained the xDS")

        standby.popen.send_signal(signal.SIGINT)  # Ctrl-C
        assert _exit_code(standby, 30) == 0
        assert "shutdown: SIGINT received, mcgw run stopping gracefully" in _log(standby)
        assert all(holder == "" for holder in (await _holders(apis, lease_name)).values()), "released on Ctrl-C"
    finally:
        for api in apis.values():
            await api.close()  # type: ignore[no-untyped-call]


# -- mcgw standalone ---------------------------------------------------------------------------------


def _start_standalone(processes: Processes, tmp_path: Path, *extra: str) -> tuple[ManagedProcess, Path,
                                                                                   dict[str, Any], list[int]]:
    """A standalone process on the quickstart, once ready: with its TMPDIR, status and listening ports."""
    root = tmp_path / "clusters"
    shutil.copytree(QUICKSTART, root)
    scratch = tmp_path / "tmp"  # the working directory is made in TMPDIR
    scratch.mkdir()
    xds_port, admin_port = free_port(), free_port()
    process = processes.mcgw("standalone", "standalone", "-f", str(root), "--xds-listen", f"127.0.0.1:{xds_port}",
                             "--admin-listen", f"127.0.0.1:{admin_port}", *extra, env={"TMPDIR": str(scratch)})
    wait_until(lambda: "ready: serving" in _log(process), 120, "standalone to be ready", process)
    status = _status(admin_port)
    envoys = status["envoys"]
    assert len(envoys) == 3, envoys
    processes.envoy_pids += [envoy["pid"] for envoy in envoys.values()]
    assert [p.name.startswith("mcgw-standalone-") for p in scratch.iterdir()] == [True]
    return process, scratch, status, [xds_port, admin_port]


def test_sigterm_on_standalone_leaves_nothing_behind(processes: Processes, tmp_path: Path) -> None:
    process, scratch, status, ports = _start_standalone(processes, tmp_path)
    envoys = status["envoys"].values()
    listening = [("127.0.0.1", port) for port in ports]
    listening += [("127.0.0.1", envoy["adminPort"]) for envoy in envoys]
    listening += [(envoy["address"], 8080) for envoy in envoys]
    assert all(_listening(*address) for address in listening)

    process.popen.send_signal(signal.SIGTERM)
    assert _exit_code(process, 60) == 0
    log = _log(process)
    for step in STANDALONE_STEPS:
        assert step in log, f"{step!r} not logged:\n{log}"
    positions = [log.index(step) for step in STANDALONE_STEPS]
    assert positions == sorted(positions), f"shutdown steps out of order:\n{log}"
    assert [envoy["pid"] for envoy in envoys if _running(envoy["pid"])] == [], "an Envoy outlived standalone"
    assert list(scratch.iterdir()) == [], "the working directory was left behind"
    assert [address for address in listening if _listening(*address)] == []


def test_a_second_signal_during_a_slow_shutdown_exits_at_once(processes: Processes, tmp_path: Path) -> None:
    # The Envoys keep their xDS streams open, so a 120 s drain grace makes the shutdown last 120 s.
    process, _, status, ports = _start_standalone(processes, tmp_path, "--drain-grace", "120")
    pids = [envoy["pid"] for envoy in status["envoys"].values()]
    process.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopped accepting connections" in _log(process), 30, "the shutdown to begin", process)
    time.sleep(0.5)
    assert process.alive(), "still draining"
    assert [port for port in ports if _listening("127.0.0.1", port)] == [], "xDS and admin refuse new connections"
    second = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    assert _exit_code(process, 10) == 128 + signal.SIGTERM
    print(f"\n[shutdown] exit after the second signal: {time.monotonic() - second:.2f}s (drain grace 120s)")
    assert "second signal (SIGTERM) during shutdown: exiting at once" in _log(process)
    wait_until(lambda: not any(_running(pid) for pid in pids), 10, "the Envoys to be killed")


async def test_a_crashed_background_task_stops_standalone_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "clusters"
    shutil.copytree(QUICKSTART, root)
    standalone = Standalone(StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0"))
    crash = asyncio.Event()

    async def crashing_file_watcher(_store: object) -> None:
        await crash.wait()
        raise OSError("the disk went away")

    standalone.provider.run = crashing_file_watcher  # type: ignore[method-assign,assignment]
    seen: dict[str, Any] = {}

    async def serve_until_the_crash() -> None:
        async with standalone:
            await standalone.guard(standalone.wait_ready())
            assert standalone.fleet is not None
            seen["envoys"] = [m.process for m in standalone.fleet.envoys.values()]
            seen["workdir"] = standalone.fleet.workdir
            seen["ports"] = [standalone.xds_port, standalone.admin_port]
            crash.set()
            await asyncio.wait_for(standalone.serve(), 10)

    with pytest.raises(BackgroundTaskFailed, match="file watcher"):
        await serve_until_the_crash()
    assert len(seen["envoys"]) == 3
    assert all(not envoy.alive() for envoy in seen["envoys"]), "every Envoy stopped after the crash"
    assert not seen["workdir"].exists()
    assert not any(_listening("127.0.0.1", port) for port in seen["ports"])
