"""The test bed cleans up after itself, also when the test using it fails."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import require_testbed
from tests.e2e.testbed import ensure_artifacts, start_clusterset


class _Boom(Exception):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; the test bed reaps its children, so this should not happen.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def _use_then_fail(seen: dict[str, Any]) -> None:
    """Start everything the test bed can start, note it in ``seen``, then fail like a broken test."""
    with start_clusterset(names=["solo"], artifacts=ensure_artifacts()) as clusterset:
        backend = clusterset.start_echo("solo")
        envoy = clusterset.start_envoy("solo")
        seen["pids"] = [p.pid for c in clusterset.clusters.values() for p in c.processes]
        seen["pids"] += [backend.process.pid, envoy.popen.pid]
        seen["netns"] = clusterset.net("solo").netns
        seen["bridge"] = clusterset.network.bridge
        seen["workdir"] = clusterset.workdir
        assert all(_alive(pid) for pid in seen["pids"])
        raise _Boom


def test_failed_test_leaves_no_process_namespace_or_file() -> None:
    require_testbed()
    seen: dict[str, Any] = {}
    with pytest.raises(_Boom):
        _use_then_fail(seen)
    pids, netns, bridge, workdir = seen["pids"], seen["netns"], seen["bridge"], seen["workdir"]

    assert [pid for pid in pids if _alive(pid)] == []
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "link", "show", bridge], capture_output=True, text=True, check=False)
    assert links.returncode != 0, f"bridge {bridge} still exists"
    assert not workdir.exists()


def test_missing_root_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.e2e.conftest as conftest

    monkeypatch.setattr(conftest, "can_create_namespaces", lambda: (False, "needs root to create namespaces"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        conftest.require_testbed()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI: needs root"):
        conftest.require_testbed()
