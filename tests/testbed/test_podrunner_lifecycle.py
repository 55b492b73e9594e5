"""Stopping containers as a kubelet does: preStop hooks within the grace period, SIGTERM, SIGKILL, and the
termination's deadline; a fake container instance records when it got which signal."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from tests.e2e.testbed.podrunner.lifecycle import (
    MIN_GRACE,
    Deadline,
    HookError,
    Sleep,
    pre_stop,
    run_hook,
    stop_container,
)
from tests.e2e.testbed.podrunner.pod import deletion_deadline
from tests.e2e.testbed.podrunner.probes import Exec, HttpGet
from tests.e2e.testbed.podrunner.state import ContainerRecord, Running, Terminated, Waiting
from tests.e2e.testbed.podrunner.status import pod_phase


class FakeInstance:
    """A container that exits on SIGTERM (unless it ignores it) and always on SIGKILL."""

    def __init__(self, obeys_term: bool = True, exec_code: int = 0) -> None:
        self.obeys_term = obeys_term
        self.exec_code = exec_code
        self.began = time.monotonic()
        self.signals: list[tuple[str, float]] = []
        self.execs: list[tuple[tuple[str, ...], float]] = []
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def signal(self, sig: int) -> None:
        self.signals.append((signal.Signals(sig).name, time.monotonic() - self.began))
        if not self.exited.done() and (sig == signal.SIGKILL or self.obeys_term):
            self.exited.set_result(-sig if sig == signal.SIGKILL else 0)

    def running(self) -> bool:
        return not self.exited.done()

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    async def exec(self, argv: Sequence[str], seconds: float) -> int:
        self.execs.append((tuple(argv), seconds))
        return self.exec_code


def _sleeping(seconds: float) -> Any:
    async def hook(budget: float) -> None:
        await asyncio.sleep(min(seconds, budget))

    return hook


def _at(instance: FakeInstance, name: str) -> float:
    return next(at for sig, at in instance.signals if sig == name)


def test_pre_stop_handlers_are_parsed_and_unsupported_ones_fail() -> None:
    container: dict[str, Any] = {"name": "app", "ports": [{"name": "admin", "containerPort": 9901}]}

    def hook(handler: dict[str, Any]) -> Any:
        return pre_stop({**container, "lifecycle": {"preStop": handler}})

    assert pre_stop(container) is None
    assert pre_stop({**container, "lifecycle": {"postStart": {"sleep": {"seconds": 1}}}}) is None
    assert hook({"sleep": {"seconds": 15}}) == Sleep(15.0)
    assert hook({"exec": {"command": ["sh", "-c", "kill -QUIT 1"]}}) == Exec(("sh", "-c", "kill -QUIT 1"))
    assert hook({"httpGet": {"path": "drain", "port": "admin", "httpHeaders": [{"name": "X-A", "value": "1"}]}}) \
        == HttpGet(9901, "drain", "HTTP", "", (("X-A", "1"),))
    assert hook({"httpGet": {"port": 8080, "scheme": "https", "host": "198.18.1.5"}}) == \
        HttpGet(8080, "/", "HTTPS", "198.18.1.5")
    assert isinstance(hook({"httpGet": {"port": "nope"}}), HookError)
    assert isinstance(hook({"tcpSocket": {"port": 80}}), HookError)  # the kubelet runs no tcpSocket hook


def test_the_deadline_is_the_grace_period_from_now_and_never_past_the_deletion_timestamp() -> None:
    wall, mono = 1_800_000_000.0, 500.0
    pod: dict[str, Any] = {"metadata": {"deletionGracePeriodSeconds": 20}, "spec": {"terminationGracePeriodSeconds": 5}}
    assert deletion_deadline(pod, wall, mono) == 520.0
    assert deletion_deadline({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 5}}, wall, mono) == 505.0
    assert deletion_deadline({"metadata": {}, "spec": {}}, wall, mono) == 530.0  # the API's default
    # Seen 12 s late: what is left of the 20 s, plus the second the timestamp's precision may have cut.
    pod["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:08Z"  # 1_800_000_008
    assert deletion_deadline(pod, wall, mono) == pytest.approx(509.0)


async def test_a_sleep_hook_runs_before_sigterm() -> None:
    instance = FakeInstance()
    code = await stop_container(instance, Deadline.after(5.0), _sleeping(0.3))
    assert code == 0
    assert [sig for sig, _ in instance.signals] == ["SIGTERM"]
    assert 0.28 <= _at(instance, "SIGTERM") < 1.0


async def test_the_grace_period_includes_the_hook_then_sigkill() -> None:
    instance = FakeInstance(obeys_term=False)
    failures: list[str] = []
    deadline = Deadline(time.monotonic() + 0.6, floor=0.2)
    code = await stop_container(instance, deadline, _sleeping(0.3), failures.append)
    assert code == -signal.SIGKILL
    assert [sig for sig, _ in instance.signals] == ["SIGTERM", "SIGKILL"]
    assert 0.28 <= _at(instance, "SIGTERM") < 0.5
    assert 0.58 <= _at(instance, "SIGKILL") < 0.9  # at the deadline: the hook's time counted
    assert failures == []


async def test_a_hook_overrunning_the_grace_period_is_cut_and_sigterm_gets_the_extension() -> None:
    instance = FakeInstance(obeys_term=False)
    failures: list[str] = []
    deadline = Deadline(time.monotonic() + 0.3, floor=0.4)
    assert Deadline.after(1.0).floor == MIN_GRACE == 2.0  # the kubelet's one-off extension
    await stop_container(instance, deadline, _sleeping(30), failures.append)
    assert 0.28 <= _at(instance, "SIGTERM") < 0.6
    assert _at(instance, "SIGKILL") - _at(instance, "SIGTERM") == pytest.approx(0.4, abs=0.15)
    assert failures == ["still running when the grace period ended"]


async def test_no_time_left_means_no_hook() -> None:
    instance = FakeInstance()
    ran: list[float] = []

    async def hook(seconds: float) -> None:
        ran.append(seconds)

    await stop_container(instance, Deadline(time.monotonic() - 1, floor=0.1), hook)
    assert ran == []
    assert [sig for sig, _ in instance.signals] == ["SIGTERM"]


async def test_a_shorter_deadline_and_cut_hooks_take_effect_at_once() -> None:
    instance = FakeInstance(obeys_term=False)
    failures: list[str] = []
    deadline = Deadline.after(30.0)
    stopping = asyncio.create_task(stop_container(instance, deadline, _sleeping(30), failures.append))
    await asyncio.sleep(0.2)
    # A second DELETE with a shorter grace period: the hook may go on, but only until then.
    deadline.shorten(time.monotonic() + 0.3)
    deadline.shorten(time.monotonic() + 10)  # a later one changes nothing
    await asyncio.sleep(0.1)
    assert instance.signals == []
    # The runner stops: hooks are cut now and SIGKILL comes at the deadline, with no extension.
    deadline.shorten(time.monotonic() + 0.2, hooks=False, floor=0.0)
    assert await stopping == -signal.SIGKILL
    assert 0.28 <= _at(instance, "SIGTERM") < 0.45
    assert _at(instance, "SIGKILL") - _at(instance, "SIGTERM") == pytest.approx(0.2, abs=0.1)
    assert failures == ["cut short"]


async def test_several_containers_share_one_deadline() -> None:
    fast, slow = FakeInstance(), FakeInstance(obeys_term=False)
    deadline = Deadline(time.monotonic() + 0.5, floor=0.1)
    await asyncio.gather(stop_container(fast, deadline, _sleeping(0.1)), stop_container(slow, deadline, _sleeping(0.2)))
    assert _at(fast, "SIGTERM") < _at(slow, "SIGTERM")
    assert [sig for sig, _ in fast.signals] == ["SIGTERM"]
    assert _at(slow, "SIGKILL") == pytest.approx(0.5, abs=0.1)


async def test_a_failed_hook_is_reported_and_the_container_still_stops() -> None:
    instance = FakeInstance(exec_code=3)
    failures: list[str] = []
    session = aiohttp.ClientSession()
    try:
        await stop_container(instance, Deadline.after(5.0),
                             lambda seconds: run_hook(Exec(("drain",)), instance, "127.0.0.1", session, seconds),
                             failures.append)
    finally:
        await session.close()
    assert instance.execs == [(("drain",), pytest.approx(5.0, abs=0.1))]
    assert failures == ["command ['drain'] exited with 3"]
    assert [sig for sig, _ in instance.signals] == ["SIGTERM"]


@pytest_asyncio.fixture
async def drain_server() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def drain(request: web.Request) -> web.Response:
        seen.append({"path": request.path_qs, **request.headers})
        return web.Response(status=500)  # a hook's HTTP status does not matter, only that it answered

    app = web.Application()
    app.router.add_get("/{tail:.*}", drain)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, seen
    await runner.cleanup()


async def test_http_get_hooks_ask_the_pod_address_and_fail_only_without_an_answer(
        drain_server: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = drain_server
    async with aiohttp.ClientSession() as session:
        instance = FakeInstance()
        await run_hook(HttpGet(port, "drain?graceful", headers=(("X-Why", "rollout"),)), instance, "127.0.0.1",
                       session, 2.0)
        assert seen[0]["path"] == "/drain?graceful"
        assert seen[0]["User-Agent"].startswith("kube-lifecycle/")
        assert seen[0]["X-Why"] == "rollout"
        with pytest.raises(HookError, match=r"GET http://127\.0\.0\.1:1/"):
            await run_hook(HttpGet(1), instance, "127.0.0.1", session, 1.0)
        began = time.monotonic()
        await run_hook(Sleep(10), instance, "127.0.0.1", session, 0.2)  # no longer than the time left
        assert time.monotonic() - began < 1


def test_a_terminating_pod_whose_containers_stopped_is_terminal_whatever_its_restart_policy() -> None:
    def record(state: Any) -> ContainerRecord:
        return ContainerRecord("c", "x", state)

    done, killed = Terminated(0, "Completed", "t", "t"), Terminated(137, "Error", "t", "t", 9)
    assert pod_phase("Always", [], [record(done)], True) == "Running"  # it would restart
    assert pod_phase("Always", [], [record(done)], True, terminating=True) == "Succeeded"
    assert pod_phase("Always", [], [record(done), record(killed)], True, terminating=True) == "Failed"
    assert pod_phase("Always", [], [record(done), record(Running("t"))], True, terminating=True) == "Running"
    assert pod_phase("Always", [], [record(Waiting("ContainerCreating"))], True, terminating=True) == "Pending"
