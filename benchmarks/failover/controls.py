"""The failover controls of FailoverPolicy v1alpha2 under the same 200 req/s open-loop load, each row against
mcgw's defaults in the same run (``python -m benchmarks.failover --controls``).

- **rolling restart**: east's two backends restarted one at a time (killed, started again on the same address,
  reported ready and seen healthy by Envoy, then the other), for the defaults (AllOrNothing), ``spillover:
  {mode: Gradual}`` and ``spillover: {mode: Gradual, minHealthyPercent: 50}``: how many requests leave east,
  and how east's answers split between its backends;
- **gradual loss**: east has four backends; with ``spillover: {mode: Gradual}`` one, then a second is killed,
  each held a few seconds: the share sent to the next level against the capacity lost (25 %, 50 %), with the
  kubelet reporting the dead pods not ready as in every row, and once with a kubelet that never does (the dead
  pods stay endpoints, so only the data plane knows they are gone);
- **allowed clusters down**: ``exclude: [{name: central}]`` leaves east and west; both are killed: every request
  must fail fast and none may reach central; the defaults in the same run fail over to central;
- **capacity step**: ``capacity: {maxRequestsPerSecondPerEndpoint: 100}`` on east's two backends (200 req/s):
  the open-loop load steps from 100 to 400 req/s and back: the excess (half) should reach the next level within
  2 s of the step and come back after the drop; the defaults keep all of it on east.

The emulated kubelet reports a killed pod not ready ``not_ready_after`` seconds after the kill, and a restarted
one ready ``ready_after`` seconds after it answers again, per pod (``scenario.Kubelet`` does the same per cluster).
Each answer names the pod that gave it; whether a request that left east did so on a retry is read from the
gateway Envoy's access log (``upstream_attempts``, ``source_cluster``), put on the load's clock by wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.testbed.clusterset import ClusterSet, EchoBackend
from tests.e2e.testbed.faults import BackendKill
from tests.e2e.testbed.load import OpenLoopLoad, Sample, between, failures, percentile, served_by, settled_at

from .scenario import PolicyMode, Progress, _error_kinds
from .stacks import settings_for

if TYPE_CHECKING:  # mcgw's controller is loaded only when the rows run
    from .mcgw_stack import McgwStack

SCENARIOS = ("rolling-restart", "gradual-loss", "allowed-down", "capacity-step")
SCENARIO_TITLES = {"rolling-restart": "rolling restart of east (one of two at a time)",
                   "gradual-loss": "gradual loss of east's backends (1, then 2 of 4)",
                   "allowed-down": "every allowed cluster down (east and west killed)",
                   "capacity-step": "load 100 -> 400 -> 100 req/s over east's capacity of 200"}
LOCAL_BACKENDS = {"rolling-restart": 2, "gradual-loss": 4, "allowed-down": 2, "capacity-step": 2}
# The capacity step: the load before and after, the load added during it, and east's capacity.
BASE_RATE, SURGE_RATE, CAPACITY_PER_ENDPOINT = 100.0, 300.0, 100
EDGE_S = 0.05  # a gradual-loss step's share is read until this long before the next change

DEFAULTS = PolicyMode("defaults", "mcgw defaults (AllOrNothing)")
GRADUAL = PolicyMode("gradual", "spillover Gradual", {"spillover": {"mode": "Gradual"}})
GRADUAL_50 = PolicyMode("gradual-min50", "spillover Gradual, minHealthyPercent 50",
                        {"spillover": {"mode": "Gradual", "minHealthyPercent": 50}})
EXCLUDE = PolicyMode("exclude-central", "exclude central", {"exclude": [{"name": "central"}]})
CAPACITY = PolicyMode("capacity-100", "capacity 100 req/s per endpoint",
                      {"capacity": {"maxRequestsPerSecondPerEndpoint": CAPACITY_PER_ENDPOINT}})
POLICIES = (DEFAULTS, GRADUAL, GRADUAL_50, EXCLUDE, CAPACITY)


@dataclass(frozen=True)
class ControlRow:
    """One run: a scenario under a policy; ``kubelet`` False: the killed pods are never reported not ready."""

    scenario: str
    policy: PolicyMode
    kubelet: bool = True
    # The policy applied to a gateway Envoy already running with the defaults (the row's others start one after it).
    applied_live: bool = False

    @property
    def key(self) -> str:
        return (f"{self.scenario}/{self.policy.key}" + ("" if self.kubelet else "/kubelet-silent")
                + ("/applied-to-running-envoy" if self.applied_live else ""))

    @property
    def title(self) -> str:
        return (self.policy.title + ("" if self.kubelet else ", kubelet silent")
                + (", applied to a running gateway" if self.applied_live else ""))


ROWS = (
    ControlRow("rolling-restart", DEFAULTS), ControlRow("rolling-restart", GRADUAL),
    ControlRow("rolling-restart", GRADUAL_50),
    ControlRow("gradual-loss", DEFAULTS), ControlRow("gradual-loss", GRADUAL),
    ControlRow("gradual-loss", GRADUAL, kubelet=False),
    ControlRow("allowed-down", DEFAULTS), ControlRow("allowed-down", EXCLUDE),
    ControlRow("allowed-down", EXCLUDE, applied_live=True),
    ControlRow("capacity-step", DEFAULTS), ControlRow("capacity-step", CAPACITY),
)


@dataclass(frozen=True)
class ControlTiming:
    rate: float = 200.0
    warm: float = 2.5
    down: float = 3.0  # rolling restart: a pod is dead this long before it starts again
    gap: float = 1.5  # rolling restart: after a restarted pod is healthy in Envoy, before the next one goes
    step: float = 5.0  # gradual loss: how long each number of dead pods is held; capacity step: twice this
    hold: float = 5.0  # allowed clusters down: from the kill to the restore
    tail: float = 4.0
    settle: float = 0.75  # after a change, before a share is read: a health check (0.5 s) and its timeout
    not_ready_after: float = 2.0
    ready_after: float = 1.0
    timeout: float = 5.0


@dataclass(frozen=True)
class Logged:
    """One request in the gateway Envoy's access log, ``at`` on the load's clock."""

    at: float
    upstream: str  # address:port, "" when no host was picked (no healthy upstream)
    source: str  # the upstream host's cluster
    status: int
    attempts: int
    flags: str


@dataclass
class ControlResult:
    row: ControlRow
    metrics: dict[str, Any]
    marks: dict[str, float]
    samples: list[Sample] = field(repr=False)
    logged: list[Logged] = field(repr=False)
    pods: dict[str, str] = field(repr=False)  # address:port -> pod
    envoy: dict[str, Any] = field(default_factory=dict)


class PodKubelet:
    """Readiness reports for single pods after a probe's delay; a newer report for a pod cancels its pending one.
    ``silent``: reports nothing (the pods stay ready in their EndpointSlice whatever happens to them)."""

    def __init__(self, stack: McgwStack, clock: Callable[[], float], silent: bool = False) -> None:
        self.stack = stack
        self.clock = clock
        self.silent = silent
        self._pending: dict[str, asyncio.Task[None]] = {}
        self.reports: list[tuple[float, str, tuple[str, ...], bool]] = []  # (at, cluster, pods, ready)

    def report(self, cluster: str, backends: Sequence[EchoBackend], ready: bool, after: float) -> None:
        if self.silent:
            return
        pods = tuple(b.pod for b in backends)
        for pod in pods:
            if (pending := self._pending.pop(pod, None)) is not None:
                pending.cancel()

        async def later() -> None:
            await asyncio.sleep(after)
            await self.stack.set_backends_ready(cluster, list(backends), ready)
            self.reports.append((self.clock(), cluster, pods, ready))

        task = asyncio.create_task(later())
        for pod in pods:
            self._pending[pod] = task

    async def settle(self) -> None:
        for task in set(self._pending.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending.clear()

    def at(self, pod: str, ready: bool, after: float = 0.0) -> float | None:
        """When a report for ``pod`` reached the API server, the first at or after ``after``."""
        return next((at for at, _, pods, up in self.reports if pod in pods and up is ready and at >= after), None)


def host_health(stack: McgwStack) -> dict[str, dict[str, Any]]:
    """Envoy's view of the backend cluster's hosts (admin ``/clusters``): per address:port its cluster, priority,
    whether it is healthy, and the requests it was sent (every attempt, retries included)."""
    if stack.envoy is None:
        return {}
    try:
        status = json.loads(stack.envoy.admin("/clusters?format=json"))
    except (OSError, urllib.error.URLError, ValueError):
        return {}
    hosts: dict[str, dict[str, Any]] = {}
    for cluster in status.get("cluster_statuses", []):
        if cluster.get("name") != stack.cluster_name:
            continue
        for host in cluster.get("host_statuses", []):
            socket = host.get("address", {}).get("socket_address", {})
            health = host.get("health_status", {})
            stats = {s.get("name"): int(s["value"]) for s in host.get("stats", [])
                     if str(s.get("value", "")).isdigit()}
            failed = any(value is True for key, value in health.items() if key.startswith("failed"))
            hosts[f"{socket.get('address')}:{socket.get('port_value')}"] = {
                "cluster": host.get("locality", {}).get("sub_zone", ""), "priority": int(host.get("priority", 0)),
                "healthy": health.get("eds_health_status") == "HEALTHY" and not failed,
                # Removed by EDS, kept by Envoy while its health checks pass.
                "pending_removal": health.get("pending_dynamic_removal") is True,
                "rq_total": stats.get("rq_total", 0), "rq_success": stats.get("rq_success", 0)}
    return hosts


async def until_healthy(stack: McgwStack, backend: EchoBackend, within: float = 20.0) -> None:
    """Wait until the gateway Envoy lists ``backend`` and its health checks pass (a rolling update's "Ready")."""
    deadline = time.monotonic() + within
    key = f"{backend.address}:{backend.port}"
    while not (await asyncio.to_thread(host_health, stack)).get(key, {}).get("healthy"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Envoy never saw {backend.pod} ({key}) healthy within {within:g} s")
        await asyncio.sleep(0.05)


def read_access_log(path: Path, wall_origin: float) -> list[Logged]:
    """Every request the Envoy logged (JSON lines amid its own log), ``wall_origin`` the wall time of the load's 0."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{") or '"start_time"' not in line:
            continue
        try:
            entry = json.loads(line)
            at = dt.datetime.fromisoformat(str(entry["start_time"])).timestamp() - wall_origin
        except (ValueError, KeyError):
            continue
        if at < 0:  # wait_serving's requests, before the load started
            continue
        found.append(Logged(at, str(entry.get("upstream_host") or ""), str(entry.get("source_cluster") or ""),
                            int(entry.get("response_code") or 0), int(entry.get("upstream_attempts") or 0),
                            str(entry.get("response_flags") or "")))
    return sorted(found, key=lambda e: e.at)


async def _sleep_until(clock: Callable[[], float], at: float) -> None:
    await asyncio.sleep(max(0.0, at - clock()))


async def _rolling_restart(stack: McgwStack, clusterset: ClusterSet, local: Sequence[EchoBackend],
                           load: OpenLoopLoad, kubelet: PodKubelet, timing: ControlTiming, marks: dict[str, float],
                           phase: list[str]) -> None:
    for i, backend in enumerate(local):
        kill = BackendKill(clusterset, [backend])
        phase[0] = f"{backend.pod} down"
        marks[f"kill_{i}"] = load.mark(f"kill {backend.pod}")
        await asyncio.to_thread(kill.inject)
        kubelet.report(stack.local, [backend], False, timing.not_ready_after)
        await _sleep_until(load.now, marks[f"kill_{i}"] + timing.down)
        phase[0] = f"{backend.pod} up"
        marks[f"restart_{i}"] = load.mark(f"restart {backend.pod}")
        await asyncio.to_thread(kill.restore)
        marks[f"restarted_{i}"] = load.mark(f"{backend.pod} answers")
        kubelet.report(stack.local, [backend], True, timing.ready_after)
        await kubelet.settle()
        await until_healthy(stack, backend)
        marks[f"healthy_{i}"] = load.mark(f"{backend.pod} healthy in Envoy")
        phase[0] = "gap"
        await asyncio.sleep(timing.gap)
    marks["restarted_all"] = load.now()


async def _gradual_loss(stack: McgwStack, clusterset: ClusterSet, local: Sequence[EchoBackend], load: OpenLoopLoad,
                        kubelet: PodKubelet, timing: ControlTiming, marks: dict[str, float], phase: list[str]) -> None:
    dead = local[:2]
    for i, backend in enumerate(dead):
        phase[0] = f"{i + 1} of {len(local)} down"
        marks[f"kill_{i}"] = load.mark(f"kill {backend.pod}")
        await asyncio.to_thread(BackendKill(clusterset, [backend]).inject)
        kubelet.report(stack.local, [backend], False, timing.not_ready_after)
        await _sleep_until(load.now, marks[f"kill_{i}"] + timing.step)
    phase[0] = "restore"
    marks["restore"] = load.mark("restore")
    await asyncio.to_thread(BackendKill(clusterset, dead).restore)
    marks["restored"] = load.mark("restored")
    kubelet.report(stack.local, dead, True, timing.ready_after)


async def _allowed_down(stack: McgwStack, clusterset: ClusterSet, killed: dict[str, list[EchoBackend]],
                        load: OpenLoopLoad, kubelet: PodKubelet, timing: ControlTiming, marks: dict[str, float],
                        phase: list[str]) -> None:
    kill = BackendKill(clusterset, [b for backends in killed.values() for b in backends])
    phase[0] = "all down"
    marks["fault"] = load.mark("fault")
    await asyncio.to_thread(kill.inject)
    marks["injected"] = load.mark("injected")
    for cluster, backends in killed.items():
        kubelet.report(cluster, backends, False, timing.not_ready_after)
    await _sleep_until(load.now, marks["fault"] + timing.hold)
    phase[0] = "restore"
    marks["restore"] = load.mark("restore")
    await asyncio.to_thread(kill.restore)
    marks["restored"] = load.mark("restored")
    for cluster, backends in killed.items():
        kubelet.report(cluster, backends, True, timing.ready_after)


async def _capacity_step(url: str, load: OpenLoopLoad, timing: ControlTiming, marks: dict[str, float],
                         phase: list[str]) -> list[Sample]:
    """A second open-loop load of SURGE_RATE on top of the first for 2 x ``timing.step``; its samples on the
    first load's clock."""
    phase[0] = "surge"
    marks["step"] = load.mark("load 400 req/s")
    surge = OpenLoopLoad(url, SURGE_RATE, timing.timeout)
    await asyncio.to_thread(surge.start)
    offset = load.now() - surge.now()
    await _sleep_until(load.now, marks["step"] + 2 * timing.step)
    marks["drop"] = load.mark("load 100 req/s")
    phase[0] = "after the surge"
    return [dataclasses.replace(sample, sent=sample.sent + offset) for sample in await asyncio.to_thread(surge.stop)]


async def _watch(load: OpenLoopLoad, progress: Progress, prefix: str, phase: list[str]) -> None:
    while True:
        samples = list(load.samples)
        spread = " ".join(f"{c} {n}" for c, n in sorted(served_by(samples).items()))
        progress.update(prefix, f"t={load.now():5.1f}s {phase[0]:<16} {len(samples):>5} answered "
                                f"{len(failures(samples)):>4} failed  {spread}")
        await asyncio.sleep(0.25)


async def run_control(stack: McgwStack, clusterset: ClusterSet, backends: dict[str, list[EchoBackend]],
                      row: ControlRow, timing: ControlTiming, progress: Progress) -> ControlResult:
    prefix = progress.start(f"{SCENARIO_TITLES[row.scenario][:34]:<34} | {row.title[:44]:<44}")
    progress.update(prefix, "preparing")
    local = backends[stack.local][:LOCAL_BACKENDS[row.scenario]]
    stack.use_backends(stack.local, local)
    live: dict[str, Any] = {}
    if row.applied_live:
        url = await stack.prepare(DEFAULTS)
        live["hosts_before_policy"] = await asyncio.to_thread(host_health, stack)
        await stack.apply_policy(row.policy)
        await asyncio.sleep(1.0)  # the xDS push of what mcgw published
        live["hosts_after_policy"] = await asyncio.to_thread(host_health, stack)
    else:
        url = await stack.prepare(row.policy)
    envoy = stack.envoy
    assert envoy is not None
    marks: dict[str, float] = {}
    phase = ["normal"]
    load = OpenLoopLoad(url, BASE_RATE if row.scenario == "capacity-step" else timing.rate, timing.timeout)
    await asyncio.to_thread(load.start)
    wall_origin = time.time() - load.now()
    surged: list[Sample] = []
    kubelet = PodKubelet(stack, load.now, silent=not row.kubelet)
    watcher = asyncio.create_task(_watch(load, progress, prefix, phase))
    try:
        await asyncio.sleep(timing.warm)
        if row.scenario == "rolling-restart":
            await _rolling_restart(stack, clusterset, local, load, kubelet, timing, marks, phase)
        elif row.scenario == "gradual-loss":
            await _gradual_loss(stack, clusterset, local, load, kubelet, timing, marks, phase)
        elif row.scenario == "capacity-step":
            surged = await _capacity_step(url, load, timing, marks, phase)
        else:
            killed = {name: backends[name][:LOCAL_BACKENDS[row.scenario]] for name in stack.order[:2]}
            await _allowed_down(stack, clusterset, killed, load, kubelet, timing, marks, phase)
        phase[0] = "tail"
        await asyncio.sleep(timing.tail)
        await kubelet.settle()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        samples = sorted([*await asyncio.to_thread(load.stop), *surged], key=lambda sample: sample.sent)
    marks["end"] = load.now()
    hosts = await asyncio.to_thread(host_health, stack)
    await asyncio.sleep(1.5)  # Envoy writes its access log every second
    counters = await stack.finish()
    counters["hosts"] = hosts
    logged = read_access_log(envoy.log_path, wall_origin)
    pods = {f"{b.address}:{b.port}": b.pod for bs in backends.values() for b in bs}
    for at, _, pod_names, ready in kubelet.reports:
        for pod in pod_names:
            marks.setdefault(f"{'ready' if ready else 'not_ready'}_{pod}", round(at, 3))
    metrics = measure(row, samples, logged, marks, kubelet, stack, local, timing, counters)
    metrics["load_max_send_lag_ms"] = round(1000 * load.max_send_lag, 1)
    if live:
        metrics["policy_applied_to_running_envoy"] = {
            when: {cluster: {"hosts": sum(1 for h in hosts.values() if h["cluster"] == cluster),
                             "pending_removal": sum(1 for h in hosts.values() if h["cluster"] == cluster
                                                    and h["pending_removal"])}
                   for cluster in stack.order} for when, hosts in live.items()}
    result = ControlResult(row, metrics, marks, samples, logged, pods, counters)
    progress.done(prefix, describe(result))
    return result


# -- figures -------------------------------------------------------------------------------------------------

def _window(samples: Sequence[Sample], logged: Sequence[Logged], local: str, start: float,
            end: float) -> dict[str, Any]:
    """Requests sent in [start, end): failures, answers by cluster, the share that left ``local``, how ``local``'s
    answers split between its pods (each answer names its pod), and from the access log which of those that left
    did so on a retry."""
    sent = between(samples, start, end)
    served = served_by(sent)
    left = sum(n for cluster, n in served.items() if cluster != local)
    log = [e for e in logged if start <= e.at < end and e.status == 200]
    by_pod: dict[str, int] = {}
    for sample in sent:
        if sample.ok and sample.cluster == local:
            by_pod[sample.pod] = by_pod.get(sample.pod, 0) + 1
    local_answers = sum(by_pod.values())
    return {"from_s": round(start, 3), "to_s": round(end, 3), "requests": len(sent), "failed": len(failures(sent)),
            "served": served, "left_local": left, "left_local_share": round(left / len(sent), 4) if sent else None,
            "left_local_on_retry": sum(1 for e in log if e.source != local and e.attempts > 1),
            "left_local_first_try": sum(1 for e in log if e.source != local and e.attempts <= 1),
            "local_answers_by_pod": dict(sorted(by_pod.items())),
            "local_share_by_pod": {pod: round(n / local_answers, 4) for pod, n in sorted(by_pod.items())}
            if local_answers else {}}


def _measure_rolling(samples: Sequence[Sample], logged: Sequence[Logged], marks: dict[str, float],
                     kubelet: PodKubelet, local: str, backends: Sequence[EchoBackend]) -> dict[str, Any]:
    start, end = marks["kill_0"], marks["restarted_all"]
    per_pod = []
    for i, backend in enumerate(backends):
        kill, healthy = marks[f"kill_{i}"], marks[f"healthy_{i}"]
        not_ready = kubelet.at(backend.pod, False, kill)
        ready = kubelet.at(backend.pod, True, kill)
        # While the dead pod is an endpoint; while the kubelet has it withdrawn; from its Ready report until Envoy's
        # health check passes.
        edges = [("listed_dead", kill, not_ready if not_ready is not None else marks[f"restarted_{i}"]),
                 ("withdrawn", not_ready, ready), ("back_unchecked", ready, healthy)]
        per_pod.append({"pod": backend.pod, "down": _window(samples, logged, local, kill, healthy),
                        "phases": {name: _window(samples, logged, local, a, b) for name, a, b in edges
                                   if a is not None and b is not None and b > a}})
    whole = _window(samples, logged, local, start, end)
    return {"restart": whole, "per_pod": per_pod,
            "left_local": whole["left_local"], "failed_during_restart": whole["failed"],
            "peak_left_local_share_250ms": _peak_share(samples, local, start, end, 0.25)}


def _peak_share(samples: Sequence[Sample], local: str, start: float, end: float, width: float) -> float | None:
    shares = [share for _, share in share_series(samples, local, start, end, width) if share is not None]
    return round(max(shares), 4) if shares else None


def share_series(samples: Sequence[Sample], local: str, start: float, end: float,
                 width: float) -> list[tuple[float, float | None]]:
    """Per bucket of ``width`` s (by send time): the share of the requests sent that another cluster answered."""
    series = []
    at = start
    while at + width <= end + 1e-9:
        sent = between(samples, at, at + width)
        left = sum(1 for s in sent if s.ok and s.cluster != local)
        series.append((at, left / len(sent) if sent else None))
        at += width
    return series


def lost_share(dead: int, total: int, min_healthy_percent: int | None) -> float:
    """The share Gradual spillover sends on when ``dead`` of ``total`` endpoints are unhealthy: Envoy's
    1 - min(1, factor x healthy share), the factor 100 / minHealthyPercent (100: the capacity lost)."""
    if total == 0:
        return 1.0
    factor = 100 / (min_healthy_percent or 100)
    return max(0.0, 1.0 - factor * (total - dead) / total)


def _measure_gradual(samples: Sequence[Sample], logged: Sequence[Logged], marks: dict[str, float],
                     kubelet: PodKubelet, local: str, backends: Sequence[EchoBackend],
                     settings_all_or_nothing: bool, min_healthy: int | None, settle: float) -> dict[str, Any]:
    """Each step's share sent on, against the capacity lost (of the four endpoints east started with) and against
    what Envoy can know: under Gradual a pod reported not ready stays listed as UNHEALTHY, so Envoy counts the
    dead and the not-ready pods among all four; under AllOrNothing nothing moves while one endpoint is healthy."""
    total = len(backends)
    kills = [marks["kill_0"], marks["kill_1"]]
    events: list[tuple[float, str, int]] = [(at, "kill", i) for i, at in enumerate(kills)]
    events += [(at, "withdrawn", i) for i, b in enumerate(backends[:2])
               if (at := kubelet.at(b.pod, False, kills[i])) is not None]
    events += [(marks["restore"], "restarting", -1), (marks["restored"], "restarted", -1)]
    if (ready := kubelet.at(backends[0].pod, True, marks["restore"])) is not None:
        events.append((ready, "ready", -1))
    # Every moment the endpoint set changes: (at, dead pods, pods reported not ready, either of the two, label).
    changes: list[tuple[float, int, int, int, str]] = [(0.0, 0, 0, 0, "0 of 4 down")]
    dead: set[int] = set()
    gone: set[int] = set()
    for at, kind, index in sorted(events):
        if kind == "kill":
            dead.add(index)
        elif kind == "withdrawn":
            gone.add(index)
        elif kind == "restarted":
            dead.clear()
        elif kind == "ready":
            gone.clear()
        label = {"kill": f"{len(dead)} of {total} down", "withdrawn": f"{len(dead)} of {total} down, "
                 f"{len(gone)} reported not ready", "restarting": "restarting",
                 "restarted": "restarted, not yet reported ready", "ready": "restarted, reported ready"}[kind]
        changes.append((at, len(dead), len(gone), len(dead | gone), label))
    steps = []
    for index, (at, down, withdrawn, unhealthy, label) in enumerate(changes):
        until = changes[index + 1][0] if index + 1 < len(changes) else marks["end"]
        expected = 0.0 if settings_all_or_nothing else lost_share(down, total, min_healthy)
        envoy_view = 0.0 if settings_all_or_nothing else lost_share(unhealthy, total, min_healthy)
        # Settled: from ``settle`` after the change to just before the next (a request sent as a pod is being killed
        # belongs to the kill).
        end = until - EDGE_S
        window = _window(samples, logged, local, at + settle, end) if end > at + settle else None
        steps.append({"step": label, "from_s": round(at, 3), "to_s": round(until, 3), "dead": down,
                      "reported_not_ready": withdrawn, "unhealthy_in_envoy": unhealthy,
                      "capacity_lost": round(down / total, 4),
                      # The policy's promise over the capacity east started with (AllOrNothing: nothing moves).
                      "expected_share": round(expected, 4),
                      # The same arithmetic over what Envoy holds: dead or not-ready endpoints among all four.
                      "envoy_view_share": round(envoy_view, 4),
                      "measured_share": None if window is None else window["left_local_share"],
                      "window": window})
    return {"steps": steps, "changes": [(round(at, 3), dead, gone) for at, dead, gone, _, _ in changes],
            "whole": _window(samples, logged, local, kills[0], marks["end"])}


def _measure_allowed_down(samples: Sequence[Sample], logged: Sequence[Logged], marks: dict[str, float],
                          local: str, excluded: Sequence[str], per_try_timeout_s: float,
                          hosts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    fault, injected, restore, restored = marks["fault"], marks["injected"], marks["restore"], marks["restored"]
    down = between(samples, fault, restore)
    failed = failures(down)
    latencies = [s.latency for s in failed]
    statuses: dict[str, int] = {}
    for sample in failed:
        key = str(sample.status) if sample.status else sample.error.split(":", 1)[0]
        statuses[key] = statuses.get(key, 0) + 1
    target = [c for c in ("west", "central") if c not in excluded]
    shift_at = settled_at(down, fault, set(target[-1:])) if target else None
    back = settled_at(between(samples, restored, marks["end"]), restored, {local})
    excluded_hosts = {address: host for address, host in hosts.items() if host["cluster"] in excluded}

    def ms(value: float | None) -> float | None:
        return None if value is None else round(1000 * value, 1)

    return {
        "during": {"requests": len(down), "failed": len(failed), "failures_by_status": statuses,
                   "served": served_by(down),
                   "failed_after_injected": len(failures(between(samples, injected, restore)))},
        "failed_latency_ms": {"p50": ms(percentile(latencies, 0.5)), "p99": ms(percentile(latencies, 0.99)),
                              "max": ms(max(latencies) if latencies else None)},
        "failed_within_per_try_timeout": sum(1 for x in latencies if x < per_try_timeout_s),
        "per_try_timeout_ms": round(1000 * per_try_timeout_s),
        "reached_excluded": {
            "answered_by_excluded": sum(1 for s in samples if s.ok and s.cluster in excluded),
            "access_log_upstream_in_excluded": sum(1 for e in logged if e.source in excluded),
            "envoy_hosts_in_excluded": len(excluded_hosts),
            "envoy_requests_to_excluded_hosts": sum(h["rq_total"] for h in excluded_hosts.values())},
        "excluded": list(excluded),
        "shift_s": None if shift_at is None else round(max(0.0, shift_at - fault), 3),
        "shift_target": target[-1:],
        "failback_s": None if back is None else round(max(0.0, back - restored), 3),
    }


def _measure_capacity(samples: Sequence[Sample], marks: dict[str, float], local: str, endpoints: int,
                      limited: bool, width: float = 0.25) -> dict[str, Any]:
    """When the share sent past east rose after the step and fell after the drop, and what it was meanwhile,
    against the excess over east's capacity (``limited``: the row's policy has one; else nothing should move)."""
    step, drop = marks["step"], marks["drop"]
    capacity = CAPACITY_PER_ENDPOINT * endpoints
    expected = max(0.0, 1 - capacity / (BASE_RATE + SURGE_RATE)) if limited else 0.0
    away = [s for s in samples if s.ok and s.cluster and s.cluster != local]
    first_away = min((s.sent for s in away if s.sent >= step), default=None)
    last_away = max((s.sent for s in away if s.sent < marks["end"]), default=None)
    series = share_series(samples, local, step - 2.0, marks["end"], width)
    # Steady from the first bucket at or above half the expected share that the share never leaves until the drop.
    steady_at = None
    for start, share in series:
        if expected and step <= start < drop and share is not None and share >= expected / 2 and all(
                v is not None and v >= expected / 2 for t, v in series if start <= t < drop - width):
            steady_at = start
            break
    surge = between(samples, step + 3.0, drop)
    after = between(samples, drop + 3.0, marks["end"])
    return {"capacity_req_per_s": capacity if limited else None,
            "load_req_per_s": [BASE_RATE, BASE_RATE + SURGE_RATE, BASE_RATE],
            "expected_share_during_surge": round(expected, 3),
            "measured_share_during_surge": _share_of(surge, local),
            "measured_share_after_drop": _share_of(after, local),
            "first_answer_past_east_s": None if first_away is None else round(first_away - step, 3),
            "steady_share_from_s": None if steady_at is None else round(steady_at - step, 3),
            "last_answer_past_east_after_drop_s": None if last_away is None or last_away < drop
            else round(last_away - drop, 3),
            "served_during_surge": served_by(surge), "share_series": [
                (round(t, 3), None if v is None else round(v, 3)) for t, v in series]}


def _share_of(samples: Sequence[Sample], local: str) -> float | None:
    answered = [s for s in samples if s.ok]
    return round(sum(1 for s in answered if s.cluster != local) / len(answered), 3) if answered else None


def measure(row: ControlRow, samples: Sequence[Sample], logged: Sequence[Logged], marks: dict[str, float],
            kubelet: PodKubelet, stack: McgwStack, local: Sequence[EchoBackend], timing: ControlTiming,
            envoy: dict[str, Any]) -> dict[str, Any]:
    settings = settings_for(row.policy, stack.local, stack.order)
    metrics: dict[str, Any] = {"requests": len(samples), "failed": len(failures(samples)),
                               "errors": _error_kinds(samples), "served": served_by(samples),
                               "access_log_entries": len(logged), "local_backends": len(local)}
    if row.scenario == "rolling-restart":
        metrics.update(_measure_rolling(samples, logged, marks, kubelet, stack.local, local))
    elif row.scenario == "gradual-loss":
        metrics.update(_measure_gradual(samples, logged, marks, kubelet, stack.local, local,
                                        settings.all_or_nothing, settings.min_healthy_percent, timing.settle))
    elif row.scenario == "capacity-step":
        metrics.update(_measure_capacity(samples, marks, stack.local, len(local), settings.capacity is not None))
    else:
        per_try = (settings.retry.per_try_timeout_ms if settings.retry else 0) / 1000
        excluded = sorted(settings.excluded)
        metrics.update(_measure_allowed_down(samples, logged, marks, stack.local, excluded, per_try,
                                             envoy.get("hosts", {})))
    return metrics


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def describe(result: ControlResult) -> str:
    m = result.metrics
    if result.row.scenario == "rolling-restart":
        shares = " ".join(f"{p['pod']} down: {p['down']['left_local']} left" for p in m["per_pod"])
        return f"failed {m['failed']:>4}  left east {m['left_local']:>4}  ({shares})"
    if result.row.scenario == "gradual-loss":
        shown = [s for s in m["steps"] if s["measured_share"] is not None and s["dead"]]
        return f"failed {m['failed']:>4}  " + "  ".join(
            f"{s['step']}: {100 * s['measured_share']:.0f} % (expected {100 * s['expected_share']:.0f} %)"
            for s in shown)
    if result.row.scenario == "capacity-step":
        return (f"failed {m['failed']:>4}  past east during the surge {_pct(m['measured_share_during_surge'])} "
                f"(expected {_pct(m['expected_share_during_surge'])}), first after {m['first_answer_past_east_s']} s, "
                f"back {m['last_answer_past_east_after_drop_s']} s after the drop")
    reached = m["reached_excluded"]
    served = " ".join(f"{c} {n}" for c, n in sorted(m["during"]["served"].items()))
    return (f"failed {m['during']['failed']:>4} of {m['during']['requests']}  {m['during']['failures_by_status']}  "
            f"p99 {m['failed_latency_ms']['p99']} ms  served {served or '-'}  "
            f"reached excluded {reached['answered_by_excluded']}")
