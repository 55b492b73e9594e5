"""FailoverPolicy capacity, service fallback and zones end to end: ``mcgw run`` over the three-cluster test bed
(east's zone ``east-a``), east's Gateway (a real Envoy on the host, reporting load over its mTLS xDS connection)
routing three paths to three ServiceImports, open-loop load against it, and objects written to real API servers.

- Capacity: east's first level holds 100 req/s per endpoint (2 endpoints, 200 req/s). A load step from 100 to
  400 req/s sends about half of it to west (the next level) within about two load reports, none failing, and
  ``/api/status``, the metrics and the dashboard's document show the decision; back at 100 req/s, it all
  returns to east.
- Service fallback: ``db`` (one level, ``maxLevels: 1``) falls back to the plain Service ``static/db-static``.
  Without a ReferenceGrant the policy says ResolvedRefs False RefNotPermitted, and with east's ``db`` down
  requests fail with 503 (west and central, healthy, get none); with the grant, the same kill moves every request
  to ``db-static`` with none failing, and the restore brings it back.
- Zones: ``zoned`` is exported with ``trafficDistribution: PreferClose``; east's endpoints are one in zone
  east-a (the gateway's) and one in east-b. Only the east-a one answers; when it dies the east-b one takes over,
  none failing and none going to west.

Which backend answered comes from the echo backends' JSON (cluster and pod), so every share is what a client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import XdsTarget
from mcgw.dataplane.process import EnvoyProcess
from mcgw.provisioning.bootstrap import NodeIdentity
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import BackendKill, restored_at_end
from tests.e2e.testbed.load import OpenLoopLoad, Sample, between, failures, settles
from tests.e2e.xds_credentials import host_envoy_tls

GW, MCS = bed_objects.GW, bed_objects.MCS
ORDER = ["east", "west", "central"]
SHOP, STATIC, INFRA = "shop-controls", "static", "infra-controls"
ZONE = "east-a"  # east's own zone (the run config's), where its gateway runs
POLICIES = f"/apis/mcgw.io/v1alpha2/namespaces/{SHOP}/failoverpolicies"
GRANTS = f"/apis/{GW}/v1beta1/namespaces/{STATIC}/referencegrants"

PER_ENDPOINT = 100  # req/s each of east's two cap endpoints serves: 200 req/s for east's level
BASE_RATE, STEP_RATE = 100.0, 400.0
SHIFT_WITHIN = 2.0  # seconds from the load step: the excess must be on west by then
SHARE_BAND = (0.35, 0.65)  # west's share at 400 req/s over 200 of capacity: 1 - 200/400 = 0.5
RATE = 200.0


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, dict[str, list[EchoBackend]]]  # service -> cluster -> backends
    controller: Controller
    envoy: EnvoyProcess
    port: int

    @property
    def east(self) -> MemberCluster:
        return self.clusterset.clusters["east"]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.controller.admin_port}"


def _pods(service: str, cluster: str, count: int = 2) -> list[str]:
    return [f"{service}-{cluster}-{i}" for i in range(count)]


def _start_backends(clusterset: ClusterSet) -> dict[str, dict[str, list[EchoBackend]]]:
    backends: dict[str, dict[str, list[EchoBackend]]] = {"cap": {}, "db": {}, "zoned": {}, "db-static": {}}
    for service in ("cap", "db"):
        for cluster in ORDER:
            backends[service][cluster] = [clusterset.start_echo(cluster, SHOP, pod) for pod in _pods(service, cluster)]
    backends["zoned"]["east"] = [clusterset.start_echo("east", SHOP, f"zoned-{zone}") for zone in ("east-a", "east-b")]
    for cluster in ORDER[1:]:
        backends["zoned"][cluster] = [clusterset.start_echo(cluster, SHOP, pod) for pod in _pods("zoned", cluster)]
    backends["db-static"]["east"] = [clusterset.start_echo("east", STATIC, pod) for pod in _pods("db-static", "east")]
    return backends


def _write_objects(clusterset: ClusterSet, backends: dict[str, dict[str, list[EchoBackend]]], port: int) -> None:
    """Everything but the ReferenceGrant, before mcgw starts: its first translation already has the policies."""
    for cluster in ORDER:
        member = clusterset.clusters[cluster]
        bed_objects.service(member, SHOP, "cap", backends["cap"][cluster])
        bed_objects.service(member, SHOP, "db", backends["db"][cluster])
        # Every export says PreferClose (they must agree); each endpoint has its zone.
        zones = ["east-a", "east-b"] if cluster == "east" else [f"{cluster}-a"] * 2
        bed_objects.service(member, SHOP, "zoned", backends["zoned"][cluster], traffic_distribution="PreferClose",
                            zones=zones)
    east = clusterset.clusters["east"]
    bed_objects.service(east, STATIC, "db-static", backends["db-static"]["east"], export=False)
    bed_objects.create(east, POLICIES, _policy("cap-capacity", "cap", {
        "capacity": {"maxRequestsPerSecondPerEndpoint": PER_ENDPOINT}}))
    bed_objects.create(east, POLICIES, _policy("db-fallback", "db", {
        "maxLevels": 1, "fallback": [{"kind": "Service", "name": "db-static", "namespace": STATIC}]}))
    bed_objects.gateway(east, INFRA, [{"name": "http", "port": port, "protocol": "HTTP",
                                       "allowedRoutes": {"namespaces": {"from": "All"}}}])
    bed_objects.create(east, f"/apis/{GW}/v1/namespaces/{SHOP}/httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "controls"},
        "spec": {"parentRefs": [{"name": "public", "namespace": INFRA}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
             "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": name, "port": 80}]}
            for name in ("cap", "db", "zoned")]}})


def _policy(name: str, target: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "mcgw.io/v1alpha2", "kind": "FailoverPolicy", "metadata": {"name": name},
            "spec": {"targetRefs": [{"group": MCS, "kind": "ServiceImport", "name": target}], **spec}}


def _withdraw(clusterset: ClusterSet) -> None:
    """The clusters are shared: leave no route, Gateway, policy, grant or export behind."""
    east = clusterset.clusters["east"]
    bed_objects.delete(east, f"{POLICIES}/cap-capacity", f"{POLICIES}/db-fallback", f"{GRANTS}/db-fallback",
                       f"/apis/{GW}/v1/namespaces/{SHOP}/httproutes/controls",
                       f"/apis/{GW}/v1/namespaces/{INFRA}/gateways/public")
    exports = f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports"
    for cluster in ORDER:
        bed_objects.delete(clusterset.clusters[cluster], *(f"{exports}/{name}" for name in ("cap", "db", "zoned")))


def _imported(cluster: MemberCluster) -> bool:
    return bool(cluster.request("GET", f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceimports")["items"])


@contextlib.asynccontextmanager
async def _controller_and_envoy(clusterset: ClusterSet, config: Path, xds_port: int,
                                directory: Path) -> AsyncIterator[tuple[Controller, EnvoyProcess]]:
    """``mcgw run`` and east's Envoy on the host over mTLS (the Envoy kept: its admin shows the hosts it has)."""
    async with Controller(load_run_config(config)) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        node = NodeIdentity("east", INFRA, "public")
        envoy = await asyncio.to_thread(clusterset.start_envoy, "east", node, XdsTarget(
            "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, directory)))
        yield controller, envoy


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    backends = await asyncio.to_thread(_start_backends, clusterset)
    directory = tmp_path_factory.mktemp("controls")
    port, xds_port = free_port(), free_port()
    try:
        await asyncio.to_thread(_write_objects, clusterset, backends, port)
        config = bed_objects.run_config(directory / "mcgw-controls.yaml", clusterset, ORDER, xds_port,
                                        zones={"east": ZONE})
        async with _controller_and_envoy(clusterset, config, xds_port, directory) as (controller, envoy):
            bed = Bed(clusterset, backends, controller, envoy, port)
            for path, pods in (("cap", _pods("cap", "east")), ("db", _pods("db", "east")),
                               ("zoned", ["zoned-east-a"])):
                load = OpenLoopLoad(bed.url(path), 50)
                await asyncio.to_thread(load.start)
                try:
                    await _until(settles(load, 0.0, _by(*pods)), 60, f"/{path} to be served by {pods}",
                                 _explain(load))
                finally:
                    await asyncio.to_thread(load.stop)
            try:
                yield bed
            finally:  # while mcgw runs, so that it removes the ServiceImports too
                await asyncio.to_thread(_withdraw, clusterset)
                await _until(lambda: not any(_imported(clusterset.clusters[n]) for n in ORDER), 30,
                             "the ServiceImports to be gone from every cluster")
    finally:
        await asyncio.to_thread(_withdraw, clusterset)


# -- waiting and reading ---------------------------------------------------------------------------------------

async def _until(check: Callable[[], bool], within: float, what: str,
                 explain: Callable[[], str] = lambda: "") -> float:
    """Wait for a state the system must reach (the limit only stops a broken run); seconds it took."""
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - started > within:
            raise AssertionError(f"never happened within {within:.0f} s: {what}\n{explain()}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _by(*pods: str) -> Callable[[Sample], bool]:
    return lambda s: s.ok and s.pod in pods


def _refused(sample: Sample) -> bool:
    return sample.status == 503


def _summary(samples: Sequence[Sample]) -> str:
    pods: dict[str, int] = {}
    failed: dict[str, int] = {}
    for sample in samples:
        if sample.ok:
            pods[f"{sample.cluster}/{sample.pod}"] = pods.get(f"{sample.cluster}/{sample.pod}", 0) + 1
        else:
            key = str(sample.status) if sample.status else sample.error.split(":")[0]
            failed[key] = failed.get(key, 0) + 1
    return f"{len(samples)} requests: answered by {dict(sorted(pods.items()))}, failed {failed}"


def _explain(load: OpenLoopLoad) -> Callable[[], str]:
    return lambda: f"last 2 s: {_summary(load.answered_since(load.now() - 2))}"


def _from_cluster(samples: Iterable[Sample], *clusters: str) -> list[Sample]:
    return [s for s in samples if s.ok and s.cluster in clusters]


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read()).decode()


def _get_json(url: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_get_text(url))
    return result


def _condition(cluster: MemberCluster, path: str, kind: str) -> dict[str, Any] | None:
    """The object's ``kind`` condition, once written for its current generation."""
    found = cluster.request("GET", path)
    for condition in (found.get("status") or {}).get("conditions", []):
        if condition["type"] == kind and condition.get("observedGeneration") == found["metadata"]["generation"]:
            return dict(condition)
    return None


def _hosts(envoy: EnvoyProcess, backends: Iterable[EchoBackend]) -> dict[str, str]:
    """Each backend address's lines in Envoy's ``/clusters`` (priority and health), where Envoy has it."""
    text = envoy.admin("/clusters").decode()
    out: dict[str, str] = {}
    for backend in backends:
        lines = [line for line in text.splitlines() if f"::{backend.address}:{backend.port}::" in line
                 and ("::priority::" in line or "::health_flags::" in line)]
        if lines:
            out[backend.pod] = "; ".join(line.rsplit("::", 2)[-2] + "=" + line.rsplit("::", 1)[-1] for line in lines)
    return out


async def _stopped(load: OpenLoopLoad) -> list[Sample]:
    return await asyncio.to_thread(load.stop)


# -- capacity --------------------------------------------------------------------------------------------------

CAP_SERVICE = f"{SHOP}/cap:80"


def _decision(status: dict[str, Any]) -> dict[str, Any] | None:
    for entry in status.get("traffic", {}).get("capacity") or ():
        if entry["cluster"] == "east" and entry["service"] == CAP_SERVICE:
            return dict(entry)
    return None


def _metric(text: str, name: str, labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _west_share(samples: Sequence[Sample]) -> float:
    return len(_from_cluster(samples, "west")) / len(samples) if samples else 0.0


def _steady_from(samples: Sequence[Sample], start: float, end: float, width: float = 0.25) -> float | None:
    """The start of the first ``width`` bucket from which on every bucket until ``end`` has west's share in
    the band; None if the last one does not."""
    steady = None
    at = start
    while at + width <= end:
        share = _west_share(between(samples, at, at + width))
        in_band = SHARE_BAND[0] <= share <= SHARE_BAND[1]
        steady = (at if steady is None else steady) if in_band else None
        at += width
    return steady


async def test_capacity_sends_the_excess_to_the_next_level_and_takes_it_back(bed: Bed) -> None:
    """100 → 400 → 100 req/s against 200 req/s of capacity on east: east alone, then about half on west within
    2 s of the step (decided in /api/status, metrics and the dashboard's document), then east alone again."""
    base = OpenLoopLoad(bed.url("cap"), BASE_RATE)
    surge = OpenLoopLoad(bed.url("cap"), STEP_RATE - BASE_RATE)
    await asyncio.to_thread(base.start)
    surge_samples: list[Sample] = []
    surging = False
    try:
        await _until(settles(base, 0.0, _by(*_pods("cap", "east")), 2.0), 30, "east alone at 100 req/s",
                     _explain(base))
        calm_at = base.mark("calm")
        await asyncio.sleep(3)
        status_before = await asyncio.to_thread(_get_json, bed.admin + "/api/status")
        await asyncio.to_thread(surge.start)
        surging = True
        offset = base.now() - surge.now()  # the surge's clock starts this much later than the base's
        step_at = offset
        decided_after = await _until(
            lambda: SHARE_BAND[0] <= ((_decision(_get_json(bed.admin + "/api/status")) or {}).get("overflowShare")
                                      or 0) <= SHARE_BAND[1],
            15, "/api/status to show about half of cap's load going past east",
            lambda: f"capacity: {_get_json(bed.admin + '/api/status')['traffic'].get('capacity')}")
        await asyncio.sleep(max(0.0, step_at + 7.0 - base.now()))
        status_during = await asyncio.to_thread(_get_json, bed.admin + "/api/status")
        dashboard = await asyncio.to_thread(_get_json, bed.admin + "/api/dashboard")
        metrics = await asyncio.to_thread(_get_text, bed.admin + "/metrics")
        surge_samples = await _stopped(surge)
        surging = False
        drop_at = offset + max(s.sent for s in surge_samples) + 1 / (STEP_RATE - BASE_RATE)
        released_after = await _until(
            lambda: ((_decision(_get_json(bed.admin + "/api/status")) or {}).get("overflowShare")) == 0,
            15, "/api/status to show no overflow once the load is back at 100 req/s",
            lambda: f"capacity: {_get_json(bed.admin + '/api/status')['traffic'].get('capacity')}")
        await asyncio.sleep(max(0.0, drop_at + 6.0 - base.now()))
    finally:
        if surging:
            surge_samples = await _stopped(surge)
        base_samples = await _stopped(base)
    samples = sorted([*base_samples, *(dataclasses.replace(s, sent=s.sent + offset) for s in surge_samples)],
                     key=lambda s: s.sent)

    before = between(samples, calm_at, step_at)
    stepped = between(samples, step_at, drop_at)
    steady = between(samples, step_at + SHIFT_WITHIN, drop_at)
    after = between(samples, drop_at)
    first_west = min((s.sent for s in _from_cluster(stepped, "west")), default=None)
    steady_at = _steady_from(samples, step_at, drop_at)
    last_west = max((s.sent for s in _from_cluster(after, "west")), default=None)
    decision_before, decision_during = _decision(status_before), _decision(status_during)
    share_metric = _metric(metrics, "mcgw_capacity_overflow_share", f'cluster="east",service="{CAP_SERVICE}"')
    on_dashboard = next((s.get("capacity") for s in dashboard.get("services") or ()
                         if s.get("cluster") == "east" and s.get("service") == CAP_SERVICE), None)

    def took(at: float | None, since: float) -> str:
        return "never" if at is None else f"{at - since:.2f} s"

    print(f"\ncapacity 200 req/s: before (100 req/s) {_summary(before)}"
          f"\n  step to 400 req/s: first west answer {took(first_west, step_at)} after the step, west's share "
          f"steady in {SHARE_BAND} from {took(steady_at, step_at)}; /api/status decided in {decided_after:.2f} s"
          f"\n  from {SHIFT_WITHIN:g} s after the step: {_summary(steady)}; west's share {_west_share(steady):.3f}"
          f"\n  /api/status {decision_during}; metric overflow share {share_metric}; dashboard {on_dashboard}"
          f"\n  back to 100 req/s: last west answer {took(last_west, drop_at)} after the drop; /api/status "
          f"released in {released_after:.2f} s; {_summary(after)}"
          f"\n  load generator lag: base {base.max_send_lag * 1000:.0f} ms, surge {surge.max_send_lag * 1000:.0f} ms")

    assert failures(samples) == [], _summary(failures(samples))
    assert len(before) > 2.5 * BASE_RATE, _summary(before)
    assert _from_cluster(before, "east") == before, _summary(before)
    assert decision_before is not None, status_before["traffic"]
    assert decision_before["overflowShare"] == 0, decision_before
    assert decision_before["capacity"] == 2 * PER_ENDPOINT, decision_before
    assert first_west is not None, f"west never answered after the step: {_summary(stepped)}"
    assert first_west - step_at <= SHIFT_WITHIN, f"the first west answer came {first_west - step_at:.2f} s after " \
                                                 f"the step"
    assert len(steady) > 4 * STEP_RATE, _summary(steady)
    assert SHARE_BAND[0] <= _west_share(steady) <= SHARE_BAND[1], \
        f"west's share from {SHIFT_WITHIN:g} s after the step: {_summary(steady)}"
    assert _from_cluster(samples, "central") == [], "central (the level after west) answered"
    assert decision_during is not None, status_during["traffic"]
    assert decision_during["capacity"] == 2 * PER_ENDPOINT, decision_during
    assert 0.4 <= decision_during["overflowShare"] <= 0.6, decision_during
    assert 300 <= decision_during["requestsPerSecond"] <= 500, decision_during
    assert share_metric is not None, "no mcgw_capacity_overflow_share for east's cap"
    assert 0.4 <= share_metric <= 0.6, share_metric
    assert on_dashboard is not None, dashboard.get("services")
    assert 0.4 <= on_dashboard["overflowShare"] <= 0.6, on_dashboard
    assert _from_cluster(between(samples, drop_at + 4.0), "west") == [], \
        f"west still answered from 4 s after the drop: {_summary(between(samples, drop_at + 4.0))}"
    assert len(between(samples, drop_at + 4.0)) > BASE_RATE, _summary(after)


# -- service fallback ------------------------------------------------------------------------------------------

GRANT = {"apiVersion": f"{GW}/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "db-fallback"},
         "spec": {"from": [{"group": "mcgw.io", "kind": "FailoverPolicy", "namespace": SHOP}],
                  "to": [{"group": "", "kind": "Service"}]}}


async def _resolved_refs(bed: Bed) -> dict[str, Any]:
    path = f"{POLICIES}/db-fallback"
    await _until(lambda: _condition(bed.east, path, "ResolvedRefs") is not None, 30,
                 "mcgw to write db-fallback's ResolvedRefs condition")
    condition = _condition(bed.east, path, "ResolvedRefs")
    assert condition is not None
    return condition


async def _kill_and_restore(bed: Bed, load: OpenLoopLoad, holds: Callable[[Sample], bool],
                            what: str) -> tuple[float, float, float, float]:
    """Kill east's db backends, wait until ``holds`` holds for every answer, watch 2 s, restore, and wait until
    east's db answers everything again: (killed, landed, restored, back) on the load's clock."""
    fault = BackendKill(bed.clusterset, bed.backends["db"]["east"])
    killed_at = load.mark("kill")
    try:
        await asyncio.to_thread(fault.inject)
        landed_at = load.mark("kill landed")
        await _until(settles(load, landed_at, holds), 30, what, _explain(load))
        await asyncio.sleep(2)
    finally:
        restored_at = load.mark("restore")
        await asyncio.to_thread(fault.restore)
    await _until(settles(load, restored_at, _by(*_pods("db", "east"))), 30,
                 "every answer from east's db once it is back", _explain(load))
    back_at = load.mark("back")
    await asyncio.sleep(1)
    return killed_at, landed_at, restored_at, back_at


async def test_service_fallback_needs_a_grant_then_takes_over_from_the_import(bed: Bed) -> None:
    """db falls back to static/db-static: refused without a ReferenceGrant (and east's db down then means 503s,
    never west or central); with the grant, the kill moves every request to db-static and back, none failing."""
    refs = await _resolved_refs(bed)
    static = bed.backends["db-static"]["east"]
    hosts_before = await asyncio.to_thread(_hosts, bed.envoy, static)
    load = OpenLoopLoad(bed.url("db"), RATE)
    await asyncio.to_thread(load.start)
    try:
        await _until(settles(load, 0.0, _by(*_pods("db", "east"))), 30, "east's db to answer", _explain(load))
        refused = await _kill_and_restore(bed, load, _refused, "every request refused with 503 while east's db is "
                                                               "down and the fallback is not permitted")
    finally:
        ungranted = await _stopped(load)

    await asyncio.to_thread(bed_objects.create, bed.east, GRANTS, GRANT)
    try:
        await _until(lambda: (_condition(bed.east, f"{POLICIES}/db-fallback", "ResolvedRefs") or {})
                     .get("status") == "True", 30, "ResolvedRefs True once the ReferenceGrant exists")
        granted_refs = await _resolved_refs(bed)
        in_envoy = await _until(lambda: len(_hosts(bed.envoy, static)) == len(static), 30,
                                "east's Envoy to have db-static's endpoints")
        hosts_after = await asyncio.to_thread(_hosts, bed.envoy, static)
        load = OpenLoopLoad(bed.url("db"), RATE)
        await asyncio.to_thread(load.start)
        try:
            await _until(settles(load, 0.0, _by(*_pods("db", "east"))), 30, "east's db to answer", _explain(load))
            fell_back = await _kill_and_restore(bed, load, _by(*_pods("db-static", "east")),
                                                "every answer from db-static while east's db is down")
        finally:
            granted = await _stopped(load)
    finally:
        await asyncio.to_thread(bed_objects.delete, bed.east, f"{GRANTS}/db-fallback")

    killed, landed, restored, back = refused
    down = between(ungranted, landed, restored)
    refused_from = min((s.sent for s in down if _refused(s)), default=None)
    g_killed, g_landed, g_restored, g_back = fell_back
    g_down = between(granted, g_killed, g_restored)
    static_from = min((s.sent for s in _from_pods(g_down, "db-static")), default=None)
    print(f"\nfallback without a grant: ResolvedRefs {refs['status']} {refs['reason']}: {refs['message']}; "
          f"db-static in Envoy: {hosts_before or 'no'}"
          f"\n  east's db down: {_summary(between(ungranted, killed, restored))}; first 503 "
          f"{'-' if refused_from is None else f'{refused_from - killed:.2f} s'} after the kill"
          f"\nwith the grant: ResolvedRefs {granted_refs['status']} {granted_refs['reason']}; db-static in Envoy "
          f"{in_envoy:.2f} s after: {hosts_after}"
          f"\n  east's db down: {_summary(g_down)}; first db-static answer "
          f"{'-' if static_from is None else f'{static_from - g_killed:.2f} s'} after the kill; "
          f"while the kill landed: {_summary(between(granted, g_killed, g_landed))}"
          f"\n  after the restore: {_summary(between(granted, g_back))}")

    assert (refs["status"], refs["reason"]) == ("False", "RefNotPermitted"), refs
    assert f"Service {STATIC}/db-static" in refs["message"], refs
    assert hosts_before == {}, f"db-static is in Envoy although no grant permits it: {hosts_before}"
    assert _from_cluster(ungranted, "west", "central") == [], "west or central answered (maxLevels: 1)"
    assert _from_pods(ungranted, "db-static") == [], "db-static answered although no grant permits it"
    assert len(between(ungranted, landed + 1.0, restored)) > RATE, _summary(down)
    assert all(_refused(s) for s in between(ungranted, landed + 1.0, restored)), _summary(down)
    assert failures(between(ungranted, back)) == [], _summary(between(ungranted, back))

    assert (granted_refs["status"], granted_refs["reason"]) == ("True", "ResolvedRefs"), granted_refs
    assert failures(between(granted, g_landed)) == [], _summary(between(granted, g_landed))
    assert _from_cluster(granted, "west", "central") == [], "west or central answered (maxLevels: 1)"
    assert len(_from_pods(between(granted, g_landed, g_restored), "db-static")) > RATE * 2, _summary(g_down)
    assert all(s.pod.startswith("db-static-") for s in between(granted, g_landed + 1.0, g_restored)), \
        _summary(g_down)
    assert _from_pods(between(granted, g_back), "db-static") == [], _summary(between(granted, g_back))


def _from_pods(samples: Iterable[Sample], prefix: str) -> list[Sample]:
    return [s for s in samples if s.ok and s.pod.startswith(f"{prefix}-")]


# -- zones -----------------------------------------------------------------------------------------------------

async def test_prefer_close_keeps_traffic_in_the_gateways_zone_then_the_cluster(bed: Bed) -> None:
    """PreferClose: only zoned-east-a (zone east-a, the gateway's) answers; killed, zoned-east-b (east's other
    zone) answers everything, none failing and none going to west or central; restored, east-a again."""
    east_a, east_b = bed.backends["zoned"]["east"]
    hosts = await asyncio.to_thread(_hosts, bed.envoy, [east_a, east_b, *bed.backends["zoned"]["west"]])
    load = OpenLoopLoad(bed.url("zoned"), RATE)
    await asyncio.to_thread(load.start)
    try:
        async with restored_at_end(BackendKill(bed.clusterset, [east_a])) as fault:
            await _until(settles(load, 0.0, _by(east_a.pod)), 30, "zoned-east-a to answer", _explain(load))
            close_at = load.mark("close")
            await asyncio.sleep(3)
            killed_at = load.mark("kill")
            await fault.inject()
            landed_at = load.mark("kill landed")
            await _until(settles(load, landed_at, _by(east_b.pod)), 30, "zoned-east-b to answer everything",
                         _explain(load))
            await asyncio.sleep(3)
            restored_at = load.mark("restore")
            await fault.restore()
            back_after = await _until(settles(load, restored_at, _by(east_a.pod)), 30,
                                      "zoned-east-a to answer everything again", _explain(load))
            back_at = load.mark("back")
            await asyncio.sleep(1)
    finally:
        samples = await _stopped(load)
    close, down = between(samples, close_at, killed_at), between(samples, killed_at, restored_at)
    east_b_from = min((s.sent for s in down if s.ok and s.pod == east_b.pod), default=None)
    print(f"\nPreferClose, Envoy's hosts {hosts}"
          f"\n  all up: {_summary(close)}"
          f"\n  zoned-east-a down: {_summary(down)}; first east-b answer "
          f"{'-' if east_b_from is None else f'{east_b_from - killed_at:.2f} s'} after the kill; "
          f"while the kill landed: {_summary(between(samples, killed_at, landed_at))}"
          f"\n  restored: east-a answers everything {back_after:.2f} s after; {_summary(between(samples, back_at))}")

    assert len(close) > RATE * 2.5, _summary(close)
    # Every answer from the gateway's zone; a request whose try on east-a is reset (an idle connection closing
    # as it is reused) is retried on the next priority, east-b: at most one in a hundred, as measured.
    assert all(s.ok and s.pod in (east_a.pod, east_b.pod) for s in close), _summary(close)
    assert sum(1 for s in close if s.pod == east_b.pod) <= len(close) // 100, _summary(close)
    assert failures(between(samples, landed_at)) == [], _summary(between(samples, landed_at))
    assert _from_cluster(samples, "west", "central") == [], _summary(samples)
    assert all(s.ok and s.pod == east_b.pod for s in between(samples, landed_at + 1.0, restored_at)), _summary(down)
    assert all(s.ok and s.pod == east_a.pod for s in between(samples, back_at)), _summary(between(samples, back_at))
