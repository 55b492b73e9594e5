"""One benchmark run: steady open-loop load, a fault in the gateway's own cluster, its restore.

Timeline of a run (seconds, on the load's clock): ``warm`` of normal traffic, the fault, ``hold``
seconds of fault, the restore, ``tail`` seconds after it. The emulated kubelet reports the faulted
endpoints not ready ``not_ready_after`` seconds after the fault and ready again ``ready_after``
seconds after the restore, as a readiness probe with ``periodSeconds: 1`` and ``failureThreshold: 2``
would; that report is the only signal the control-plane-only mode has.

"Local API server lost": the API server the controller reads the local cluster through stops, and
``lost_lead`` seconds later the local backends are killed; the kubelet's reports reach mcgw only
when that API server is back. Traffic must stay local while only the API server is gone, and fail
over without the control plane once the backends die.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.e2e.testbed.clusterset import ClusterSet, EchoBackend
from tests.e2e.testbed.faults import Backend503, BackendKill, Fault, NetworkBlackhole
from tests.e2e.testbed.load import (
    OpenLoopLoad,
    Sample,
    between,
    failures,
    percentile,
    served_by,
    settled_at,
)

FAULTS = ("backend-kill", "backend-503", "blackhole", "apiserver-lost")
FAULT_TITLES = {"backend-kill": "backend kill", "backend-503": "backend 503", "blackhole": "network blackhole",
                "apiserver-lost": "local API server lost"}


@dataclass(frozen=True)
class PolicyMode:
    """A policy row: the FailoverPolicy spec it applies (None: mcgw's defaults, no policy), or the flat peer;
    ``protocol`` "grpc": unary gRPC calls through a GRPCRoute to gRPC echo backends instead of HTTP requests;
    "tcp": a new TCP connection per request through a TCPRoute (the echo backend answers over the raw stream)."""

    key: str
    title: str
    spec: dict[str, Any] | None = None
    flat: bool = False
    protocol: str = "http"


OFF = {"enabled": False}
POLICIES = (
    PolicyMode("control-plane", "control-plane only", {"healthCheck": OFF, "outlierDetection": OFF, "retry": OFF}),
    PolicyMode("health-checks", "active health checks", {"outlierDetection": OFF, "retry": OFF}),
    PolicyMode("outlier-retries", "outlier detection + retries", {"healthCheck": OFF}),
    PolicyMode("defaults", "mcgw defaults"),
    PolicyMode("flat", "flat (one priority, as Envoy Gateway does)", flat=True),
    PolicyMode("grpc-defaults", "gRPC: mcgw defaults", protocol="grpc"),
    PolicyMode("grpc-flat", "gRPC: flat (one priority)", flat=True, protocol="grpc"),
    PolicyMode("tcp-defaults", "TCP: mcgw defaults", protocol="tcp"),
    PolicyMode("tcp-flat", "TCP: flat (one priority)", flat=True, protocol="tcp"),
)
PROTOCOLS = ("http", "grpc", "tcp")
PROTOCOL_OF = {p.key: p.protocol for p in POLICIES}


def not_applicable(policy: str, fault: str) -> str | None:
    """Why a fault means nothing to a row (None: it applies). Such a combination is not run, and the table,
    the JSON and the plot say so rather than leave it out."""
    if fault == "backend-503" and PROTOCOL_OF.get(policy) == "tcp":
        return "not a TCP failure: an HTTP 503 over a connection the backend accepted is a connection that worked"
    return None


def applies(policy: str, fault: str) -> bool:
    return not_applicable(policy, fault) is None


def fault_title(policy: str, fault: str) -> str:
    """How a fault reads in a policy row: "backend-503" of a gRPC row fails every call with UNAVAILABLE."""
    if fault == "backend-503" and PROTOCOL_OF.get(policy) == "grpc":
        return "backend UNAVAILABLE"
    return FAULT_TITLES.get(fault, fault)


@dataclass(frozen=True)
class Timing:
    rate: float = 200.0
    warm: float = 2.5
    hold: float = 6.0
    tail: float = 5.0
    lost_lead: float = 2.0
    not_ready_after: float = 2.0
    ready_after: float = 1.0
    timeout: float = 5.0


class Stack(Protocol):
    """What a run needs from the control plane under test (mcgw itself, or the emulation)."""

    local: str
    order: list[str]  # clusters by priority for the local gateway

    async def prepare(self, policy: PolicyMode) -> str:
        """Apply the policy, start a fresh Envoy, wait until it serves locally; returns the URL to load
        (``grpc://`` for a gRPC row)."""
        ...

    async def set_ready(self, cluster: str, ready: bool) -> None:
        """The kubelet's report: every endpoint of ``cluster`` becomes (not) ready in its EndpointSlice."""
        ...

    async def lose_apiserver(self) -> None: ...

    async def restore_apiserver(self) -> None: ...

    async def finish(self) -> dict[str, Any]:
        """Stop the run's Envoy; returns what it counted (health checks, retries, ejections)."""
        ...


class Kubelet:
    """Reports readiness changes after a probe's delay; a newer report cancels a pending one."""

    def __init__(self, stack: Stack, cluster: str) -> None:
        self.stack = stack
        self.cluster = cluster
        self._pending: asyncio.Task[None] | None = None
        self.reports: list[tuple[float, bool]] = []

    def report(self, ready: bool, after: float, clock: Callable[[], float]) -> None:
        if self._pending is not None:
            self._pending.cancel()

        async def later() -> None:
            await asyncio.sleep(after)
            self.reports.append((clock(), ready))
            await self.stack.set_ready(self.cluster, ready)

        self._pending = asyncio.create_task(later())

    async def settle(self) -> None:
        if self._pending is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending


@dataclass
class RunResult:
    policy: str
    fault: str
    metrics: dict[str, Any]
    marks: dict[str, float]
    samples: list[Sample] = field(repr=False)
    envoy: dict[str, Any] = field(default_factory=dict)


def _fault(kind: str, clusterset: ClusterSet, backends: Sequence[EchoBackend], local: str) -> Fault:
    if kind in ("backend-kill", "apiserver-lost"):
        return BackendKill(clusterset, backends)
    if kind == "backend-503":
        return Backend503(backends)
    if kind == "blackhole":
        return NetworkBlackhole(clusterset.net(local))
    raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULTS)}")


class Progress:
    """One line per run, rewritten in place while it runs (when the output is a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self.live = sys.stdout.isatty()

    def start(self, title: str) -> str:
        self.index += 1
        return f"[{self.index:>2}/{self.total}] {title}"

    def update(self, prefix: str, text: str) -> None:
        if self.live:
            sys.stdout.write(f"\r\033[K{prefix}  {text}")
            sys.stdout.flush()

    def done(self, prefix: str, text: str) -> None:
        if self.live:
            sys.stdout.write("\r\033[K")
        print(f"{prefix}  {text}", flush=True)


async def _watch(load: OpenLoopLoad, progress: Progress, prefix: str, phase: list[str]) -> None:
    while True:
        samples = list(load.samples)
        counts = served_by(samples)
        spread = " ".join(f"{c} {n}" for c, n in sorted(counts.items()))
        progress.update(prefix, f"t={load.now():5.1f}s {phase[0]:<8} {len(samples):>5} answered "
                                f"{len(failures(samples)):>4} failed  {spread}")
        await asyncio.sleep(0.25)


async def run_one(stack: Stack, clusterset: ClusterSet, backends: Sequence[EchoBackend], policy: PolicyMode,
                  fault_kind: str, timing: Timing, progress: Progress) -> RunResult:
    prefix = progress.start(f"{policy.title[:28]:<28} | {fault_title(policy.key, fault_kind):<21}")
    progress.update(prefix, "preparing")
    url = await stack.prepare(policy)
    fault = _fault(fault_kind, clusterset, backends, stack.local)
    kubelet = Kubelet(stack, stack.local)
    phase = ["normal"]
    marks: dict[str, float] = {}
    load = OpenLoopLoad(url, timing.rate, timing.timeout)
    await asyncio.to_thread(load.start)
    watcher = asyncio.create_task(_watch(load, progress, prefix, phase))
    api_restore: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(timing.warm)
        if fault_kind == "apiserver-lost":
            marks["apiserver_lost"] = load.mark("API server lost")
            phase[0] = "no API"
            await stack.lose_apiserver()
            await asyncio.sleep(timing.lost_lead)
        marks["fault"] = load.mark("fault")
        phase[0] = "fault"
        await asyncio.to_thread(fault.inject)
        marks["injected"] = load.mark("injected")  # the backends are dead (waited for), or the link is down
        kubelet.report(False, timing.not_ready_after, load.now)
        await asyncio.sleep(max(0.0, marks["fault"] + timing.hold - load.now()))
        phase[0] = "restore"
        marks["restore"] = load.mark("restore")
        await asyncio.to_thread(fault.restore)
        marks["restored"] = load.mark("restored")
        phase[0] = "restored"
        kubelet.report(True, timing.ready_after, load.now)
        if fault_kind == "apiserver-lost":
            api_restore = asyncio.create_task(stack.restore_apiserver())
        await asyncio.sleep(timing.tail)
        await kubelet.settle()
        if api_restore is not None:
            await api_restore
            marks["apiserver_back"] = load.mark("API server back")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        samples = await asyncio.to_thread(load.stop)
    marks["end"] = load.now()
    for at, ready in kubelet.reports:
        marks["kubelet_ready" if ready else "kubelet_not_ready"] = at
    envoy = await stack.finish()
    metrics = measure(samples, marks, stack.local, stack.order, policy.flat, envoy, load.max_send_lag)
    result = RunResult(policy.key, fault_kind, metrics, marks, samples, envoy)
    progress.done(prefix, describe(metrics))
    return result


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def measure(samples: Sequence[Sample], marks: dict[str, float], local: str, order: Sequence[str], flat: bool,
            envoy: dict[str, Any], send_lag: float = 0.0) -> dict[str, Any]:
    """The run's figures: failed requests, time to full shift, time to failback, p99 during the shift.

    - full shift: from the fault until every later request (to the restore) is answered 200 by the
      next priority (flat: by any other cluster);
    - failback: from the moment the restored backends answer (a restarted one takes a moment to start)
      until every later request is answered 200 locally (flat: until the local cluster answers again,
      as it gets only its share); also from the kubelet's Ready report, which mcgw cannot be faster than
      once the endpoints were withdrawn;
    - p99 during the shift: every request sent from the fault until 1 s after the shift completed (or
      until the restore, when it never did), failed ones included at the latency they failed after.
    """
    fault, restore, restored, end = marks["fault"], marks["restore"], marks["restored"], marks["end"]
    others = [c for c in order if c != local]
    target = set(others) if flat else {others[0]}
    faulted = between(samples, fault, restore)
    shift_at = settled_at(faulted, fault, target)
    shift = None if shift_at is None else max(0.0, shift_at - fault)
    after = between(samples, restored, end)
    if flat:
        back = next((s.sent for s in after if s.ok and s.cluster == local), None)
    else:
        back = settled_at(after, restored, {local})
    failback = None if back is None else max(0.0, back - restored)
    ready = marks.get("kubelet_ready")
    after_ready = None if back is None or ready is None else max(0.0, back - ready)
    window_end = min(restore, fault + (shift if shift is not None else math.inf) + 1.0)
    during = between(samples, fault, window_end)
    before = between(samples, 0.0, marks.get("apiserver_lost", fault))
    latencies = [s.latency for s in during]
    metrics: dict[str, Any] = {
        "load_max_send_lag_ms": round(1000 * send_lag, 1),
        "requests": len(samples),
        "failed": len(failures(samples)),
        "failed_during_fault": len(failures(faulted)),
        # A TCP connection accepted by a backend that then dies cannot be saved by anyone: the ones sent while
        # the fault was being injected are counted apart from those sent once it had landed.
        "failed_while_injecting": len(failures(between(samples, fault, marks.get("injected", fault)))),
        "failed_after_injected": len(failures(between(samples, marks.get("injected", fault), end))),
        "failed_after_restore": len(failures(between(samples, restore, end))),
        "shift_s": _round(shift),
        "failback_s": _round(failback),
        "failback_after_ready_s": _round(after_ready),
        "p99_shift_ms": _round(None if not latencies else 1000 * (percentile(latencies, 0.99) or 0.0), 1),
        "p50_before_ms": _round(1000 * (percentile([s.latency for s in before if s.ok], 0.5) or 0.0), 1),
        "served_before": served_by(before),
        "served_during_fault": served_by(faulted),
        "served_after_restore": served_by(after),
        "shift_target": sorted(target),
        "errors": _error_kinds(samples),
    }
    if "apiserver_lost" in marks:
        lost = between(samples, marks["apiserver_lost"], fault)
        metrics["left_local_without_apiserver"] = sum(1 for s in lost if not (s.ok and s.cluster == local))
    duration = end
    checks, endpoints = envoy.get("health_check_attempts"), envoy.get("endpoints")
    if checks and endpoints:
        metrics["health_checks_per_endpoint_per_s"] = round(checks / endpoints / duration, 2)
    return metrics


def _error_kinds(samples: Sequence[Sample]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for sample in failures(samples):
        kind = str(sample.status) if sample.status else sample.error.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def describe(metrics: dict[str, Any]) -> str:
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f} s"

    return (f"failed {metrics['failed']:>4}  shift {seconds(metrics['shift_s']):>7}  "
            f"failback {seconds(metrics['failback_s']):>7}  p99 {metrics['p99_shift_ms'] or 0:>6.0f} ms")
