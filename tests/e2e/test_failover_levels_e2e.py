"""FailoverPolicy v1alpha2 end to end: ``mcgw run`` over the three-cluster test bed, a service exported from
each (two backends per cluster), east's Gateway (a real Envoy on the host) routing /cart to the ServiceImport,
open-loop load against it, and policies written to east's real API server.

- Clusters sharing a level split it by their weights (3:1 gives east about 75 %, west 25 %), the next level
  gets nothing; when one of them loses its backends the other takes all of it, none failing.
- Exclusion and ``maxLevels`` keep traffic inside the allowed clusters: with all of those down, requests fail
  fast with 503 and none reaches the cluster left out, although it is healthy (and, without the policy, serves).
- The CRD on a real API server: a v1alpha1 object is read by mcgw (Accepted, and its preference moves the
  failover), reads back as v1alpha2 unchanged; contradictions are refused with the CEL rule's message; a
  policy naming a cluster outside the ClusterSet is Accepted False ``UnknownCluster`` and changes nothing.

Which cluster answered comes from the echo backends' JSON, so every share and count is what a client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from mcgw.semantics.policy.failover import RetrySettings
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import BackendKill, restored_at_end
from tests.e2e.testbed.load import (
    OpenLoopLoad,
    Sample,
    between,
    failures,
    percentile,
    served_by,
    settles,
    until_served_by,
)
from tests.e2e.xds_credentials import controller_with_east_envoy

GW, MCS = bed_objects.GW, bed_objects.MCS
ORDER = ["east", "west", "central"]
SHOP, INFRA = "shop-levels", "infra-levels"
RATE = 200.0
CART = {"group": MCS, "kind": "ServiceImport", "name": "cart"}
# Where the clusters may keep data: a label selector in a policy can say "never outside us".
LABELS = {"east": {"residency": "us"}, "west": {"residency": "us"}, "central": {"residency": "eu"}}
PER_TRY_TIMEOUT = RetrySettings().per_try_timeout_ms / 1000  # mcgw's default, what a dead level could cost a try
FAST = 0.3  # seconds: a refusal well under one try, so the client is not kept waiting for a level it may not use
SHARE_TOLERANCE = 0.06  # of the requests: far from 50 % or 100 %, and more than Envoy's locality balancing strays


def policies(version: str = "v1alpha2") -> str:
    return f"/apis/mcgw.io/{version}/namespaces/{SHOP}/failoverpolicies"


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, list[EchoBackend]]
    url: str

    @property
    def east(self) -> MemberCluster:
        return self.clusterset.clusters["east"]

    def kill(self, *clusters: str) -> BackendKill:
        return BackendKill(self.clusterset, [b for name in clusters for b in self.backends[name]])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    backends = {name: [clusterset.start_echo(name, namespace=SHOP, pod=f"cart-{name}-{i}-levels") for i in range(2)]
                for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(bed_objects.service, clusterset.clusters[name], SHOP, "cart", backends[name])
    directory = tmp_path_factory.mktemp("levels")
    port, xds_port = free_port(), free_port()
    await asyncio.to_thread(bed_objects.http_gateway_to_import, clusterset.clusters["east"], port, SHOP, INFRA)
    config = bed_objects.run_config(directory / "mcgw-levels.yaml", clusterset, ORDER, xds_port, labels=LABELS)
    try:
        async with controller_with_east_envoy(clusterset, config, xds_port, INFRA, directory):
            url = f"http://127.0.0.1:{port}/cart"
            load = OpenLoopLoad(url, 50)
            await asyncio.to_thread(load.start)
            try:
                await until_served_by(load, 0.0, "east", streak=50, within=60)
            finally:
                await asyncio.to_thread(load.stop)
            try:
                yield Bed(clusterset, backends, url)
            finally:  # while mcgw runs, so that it removes the ServiceImports too
                await asyncio.to_thread(_withdraw, clusterset)
                await _until(lambda: not any(_imported(clusterset.clusters[n]) for n in ORDER), 30,
                             "the ServiceImport to be gone from every cluster")
    finally:
        await asyncio.to_thread(_withdraw, clusterset)


def _withdraw(clusterset: ClusterSet) -> None:
    """The clusters are shared: leave no route, Gateway, policy or export behind."""
    east = clusterset.clusters["east"]
    for policy in east.request("GET", policies())["items"]:
        bed_objects.delete(east, f"{policies()}/{policy['metadata']['name']}")
    bed_objects.delete(east, f"/apis/{GW}/v1/namespaces/{SHOP}/httproutes/cart",
                       f"/apis/{GW}/v1/namespaces/{INFRA}/gateways/public")
    for name in ORDER:
        bed_objects.delete(clusterset.clusters[name], f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports/cart")


def _imported(cluster: MemberCluster) -> bool:
    return not _absent(cluster, f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceimports/cart")


def _absent(cluster: MemberCluster, path: str) -> bool:
    try:
        cluster.request("GET", path)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return True
        raise
    return False


async def _until(check: Callable[[], bool], within: float, what: str,
                 explain: Callable[[], str] = lambda: "") -> None:
    """Wait for a state the system must reach; the limit only stops a broken run."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within:.0f} s: {what}\n{explain()}")
        await asyncio.sleep(0.1)


# -- policies on east's API server ---------------------------------------------------------------------

def _policy(name: str, spec: dict[str, Any], version: str = "v1alpha2") -> dict[str, Any]:
    return {"apiVersion": f"mcgw.io/{version}", "kind": "FailoverPolicy", "metadata": {"name": name},
            "spec": {"targetRefs": [CART], **spec}}


def _post(cluster: MemberCluster, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Create an object as kubectl would; its stored form and the API server's warnings."""
    request = urllib.request.Request(cluster.api_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=cluster.ssl_context(), timeout=30) as response:
        return json.loads(response.read()), response.headers.get_all("Warning") or []


def _refusal(cluster: MemberCluster, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """The HTTP status and message with which the API server refuses ``body``."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(cluster, path, body)
    return refused.value.code, str(json.loads(refused.value.read()).get("message", ""))


def _accepted(cluster: MemberCluster, name: str, version: str = "v1alpha2") -> dict[str, Any] | None:
    """The policy's Accepted condition, once mcgw has written it for the current generation."""
    policy = cluster.request("GET", f"{policies(version)}/{name}")
    for condition in (policy.get("status") or {}).get("conditions", []):
        if condition["type"] == "Accepted" and condition.get("observedGeneration") == policy["metadata"]["generation"]:
            return dict(condition)
    return None


async def _until_accepted(bed: Bed, name: str, version: str = "v1alpha2") -> dict[str, Any]:
    await _until(lambda: _accepted(bed.east, name, version) is not None, 30,
                 f"mcgw to write FailoverPolicy {name}'s Accepted condition")
    condition = _accepted(bed.east, name, version)
    assert condition is not None
    return condition


@contextlib.asynccontextmanager
async def _applied(bed: Bed, name: str, spec: dict[str, Any], version: str = "v1alpha2") -> AsyncIterator[
        tuple[dict[str, Any], list[str]]]:
    """A policy on east's API server for the duration; yields what the API server stored and its warnings."""
    created = await asyncio.to_thread(_post, bed.east, policies(version), _policy(name, spec, version))
    try:
        yield created
    finally:
        await asyncio.to_thread(bed_objects.delete, bed.east, f"{policies()}/{name}")


# -- reading the traffic -------------------------------------------------------------------------------

def _answers(samples: Iterable[Sample], cluster: str) -> list[Sample]:
    return [s for s in samples if s.ok and s.cluster == cluster]


def _from(*clusters: str) -> Callable[[Sample], bool]:
    return lambda s: s.ok and s.cluster in clusters


def _refused(sample: Sample) -> bool:
    return sample.status == 503


def _summary(samples: Sequence[Sample]) -> str:
    kinds: dict[str, int] = {}
    for sample in failures(samples):
        key = str(sample.status) if sample.status else sample.error.split(":")[0]
        kinds[key] = kinds.get(key, 0) + 1
    return f"{len(samples)} requests: answered by {served_by(samples)}, failed {kinds}"


def _explain(load: OpenLoopLoad) -> Callable[[], str]:
    return lambda: f"last 2 s: {_summary(load.answered_since(load.now() - 2))}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _shares(samples: Sequence[Sample]) -> dict[str, float]:
    return {name: len(_answers(samples, name)) / len(samples) for name in ORDER} if samples else {}


def _assert_weighted(window: Sequence[Sample], what: str) -> None:
    shares = _shares(window)
    print(f"{what}: {_summary(window)}; shares {({k: round(v, 3) for k, v in shares.items()})}")
    assert len(window) > RATE * 1.5, f"{what}: too few requests to weigh ({len(window)})"
    assert failures(window) == [], f"{what}: {_summary(window)}"
    assert abs(shares["east"] - 0.75) <= SHARE_TOLERANCE, f"{what}: east's share should be 3/4: {shares}"
    assert abs(shares["west"] - 0.25) <= SHARE_TOLERANCE, f"{what}: west's share should be 1/4: {shares}"
    assert shares["central"] == 0, f"{what}: central (the next level) answered: {shares}"


# -- the tests -----------------------------------------------------------------------------------------

SHARED_LEVEL = {"levels": [{"clusters": [{"local": True, "weight": 3}, {"name": "west", "weight": 1}]}]}


async def _until_shared(bed: Bed, load: OpenLoopLoad) -> None:
    """Until the shared level is in east's Envoy: west, the second level by east's failoverOrder without the
    policy, answers."""
    accepted = await _until_accepted(bed, "shared-level")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted"), accepted
    applied_at = load.mark("accepted")
    await _until(lambda: bool(_answers(load.answered_since(applied_at), "west")), 30,
                 "west to answer once the policy shares east's level with it", _explain(load))
    await asyncio.sleep(0.5)


async def test_clusters_sharing_a_level_split_it_by_weight(bed: Bed) -> None:
    """east 3 : west 1 in the first level: three requests in four answered by east, one by west, none by
    central (the next level)."""
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    try:
        async with _applied(bed, "shared-level", SHARED_LEVEL):
            await _until_shared(bed, load)
            measure_at = load.mark("measure")
            await asyncio.sleep(5)
            measured_at = load.mark("measured")
    finally:
        samples = await asyncio.to_thread(load.stop)
    print()
    _assert_weighted(between(samples, measure_at, measured_at), "shared level, east 3 : west 1")
    assert failures(samples) == [], _summary(samples)


async def test_a_cluster_sharing_the_level_takes_all_of_it_when_the_other_fails(bed: Bed) -> None:
    """east's backends die: west (same level) answers everything, none failing; when east is back the level
    splits 3 : 1 again. The few requests that met east's failure as it landed are retried on the next level
    (central): Envoy's previous_priorities leaves out the whole priority after a failed try, and no retry plugin
    leaves out one locality. Only those: nothing sent a quarter second after the kill landed reaches central."""
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    try:
        async with restored_at_end(bed.kill("east")) as fault, _applied(bed, "shared-level", SHARED_LEVEL):
            await _until_shared(bed, load)
            fault_at = load.mark("fault")
            await fault.inject()
            landed_at = load.mark("killed")
            await _until(settles(load, fault_at, _from("west")), 30, "every answer from west once east is down",
                         _explain(load))
            await asyncio.sleep(1)
            restore_at = load.mark("restore")
            await fault.restore()
            back_at = load.mark("restored")
            await _until(lambda: bool(_answers(load.answered_since(back_at), "east")), 30,
                         "east to answer again once its backends are back", _explain(load))
            again_at = load.mark("east answers") + 0.5
            await asyncio.sleep(3.5)
            again_end = load.mark("end")
    finally:
        samples = await asyncio.to_thread(load.stop)
    during = between(samples, fault_at, restore_at)
    print(f"\neast down: {_summary(during)}; whole run: {_summary(samples)}")
    _assert_weighted(between(samples, again_at, again_end), "east back")
    assert failures(samples) == [], _summary(samples)
    assert _answers(between(samples, fault_at + 1.0, restore_at), "east") == []
    # West shares east's level, so it takes all of east's traffic: central, the next level, answers only the
    # retries of requests that met the kill.
    late = [s for s in _answers(samples, "central") if s.sent > landed_at + 0.25]
    assert late == [], f"central answered requests sent well after the kill had landed: {late[:5]}"
    print(f"retried on central as the kill landed: {len(_answers(samples, 'central'))}")


async def test_v1alpha1_policy_is_read_and_its_preference_moves_the_failover(bed: Bed) -> None:
    """A deprecated v1alpha1 object through the API: accepted, read back as v1alpha2 unchanged, and its
    preference (central before west) decides where east's traffic goes when east is down."""
    spec = {"preference": ["central"], "mode": "AllOrNothing"}
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    try:
        async with restored_at_end(bed.kill("east")) as east_down:
            await asyncio.sleep(1)
            await east_down.inject()
            unpoliced_at = load.mark("east down, no policy")
            await _until(settles(load, unpoliced_at, _from("west")), 30,
                         "west (east's failoverOrder) to take over with no policy", _explain(load))
            created_at = load.mark("creating the policy")
            async with _applied(bed, "legacy", spec, version="v1alpha1") as (stored, warnings):
                assert stored["apiVersion"] == "mcgw.io/v1alpha1"
                assert any("mcgw.io/v1alpha1 FailoverPolicy is deprecated" in w for w in warnings), warnings
                accepted = await _until_accepted(bed, "legacy", version="v1alpha1")
                assert (accepted["status"], accepted["reason"]) == ("True", "Accepted"), accepted
                policy_at = load.mark("accepted")
                await _until(settles(load, policy_at, _from("central")), 30,
                             "central (the policy's preference) to take over from west", _explain(load))
                as_v1alpha2 = await asyncio.to_thread(bed.east.request, "GET", f"{policies()}/legacy")
                await east_down.restore()
                await _until(settles(load, load.mark("restored"), _from("east")), 30,
                             "every answer from east once its backends are back", _explain(load))
                fault_at = load.mark("fault")
                await east_down.inject()
                await _until(settles(load, fault_at, _from("central")), 30,
                             "central to take over from east (the policy in force)", _explain(load))
                restore_at = load.mark("restore")
                await east_down.restore()
                back_at = load.mark("restored")
                await _until(settles(load, back_at, _from("east")), 30, "every answer from east again", _explain(load))
    finally:
        samples = await asyncio.to_thread(load.stop)
    print(f"\nv1alpha1 preference [central], east down: without the policy "
          f"{_summary(between(samples, unpoliced_at, created_at))}; the policy applied "
          f"{_summary(between(samples, created_at, restore_at))}; with the policy from the start "
          f"{_summary(between(samples, fault_at, restore_at))}")
    assert as_v1alpha2["apiVersion"] == "mcgw.io/v1alpha2"
    assert as_v1alpha2["spec"] == {"targetRefs": [CART], **spec}, "a v1alpha1 object reads as v1alpha2 unchanged"
    # Without the policy east's failoverOrder holds: west, never central.
    assert _answers(between(samples, unpoliced_at, created_at), "central") == []
    with_policy = between(samples, fault_at, back_at)
    assert failures(between(samples, created_at)) == [], _summary(between(samples, created_at))
    assert _answers(with_policy, "central"), "central took over"
    assert _answers(with_policy, "west") == [], f"west answered although the policy prefers central: " \
                                                f"{_summary(with_policy)}"


CONTRADICTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "levels-and-preference": ({"levels": [{"clusters": [{"local": True}]}], "preference": ["west"]},
                              "set levels or preference, not both"),
    "threshold-without-gradual": ({"spillover": {"mode": "AllOrNothing", "minHealthyPercent": 50}},
                                  "minHealthyPercent applies to mode Gradual"),
    "two-criteria-in-a-member": ({"levels": [{"clusters": [{"name": "west", "region": "us-west"}]}]},
                                 "set exactly one of name, region, selector and local"),
}


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
async def test_the_api_server_refuses_contradictions_with_the_rules_message(bed: Bed, case: str) -> None:
    spec, message = CONTRADICTIONS[case]
    code, refusal = await asyncio.to_thread(_refusal, bed.east, policies(), _policy(f"bad-{case}", spec))
    assert code == 422, refusal
    assert message in refusal, refusal
    assert await asyncio.to_thread(_absent, bed.east, f"{policies()}/bad-{case}")


async def test_a_policy_naming_an_unknown_cluster_is_rejected_and_changes_nothing(bed: Bed) -> None:
    """Had mcgw applied it, west would share east's level and answer half the requests."""
    spec = {"levels": [{"clusters": [{"local": True}, {"name": "west"}, {"name": "north"}]}]}
    async with _applied(bed, "unknown-cluster", spec):
        accepted = await _until_accepted(bed, "unknown-cluster")
        load = OpenLoopLoad(bed.url, RATE)
        await asyncio.to_thread(load.start)
        try:
            await asyncio.sleep(1)
            since = load.mark("observed")
            await asyncio.sleep(2)
        finally:
            samples = await asyncio.to_thread(load.stop)
        window = between(samples, since)
    print(f"\nunknown cluster: {accepted['reason']}: {accepted['message']}; traffic: {_summary(window)}")
    assert (accepted["status"], accepted["reason"]) == ("False", "UnknownCluster"), accepted
    assert "north" in accepted["message"], accepted
    assert len(window) > RATE
    assert all(s.ok and s.cluster == "east" for s in window), _summary(window)


RESIDENCY: dict[str, dict[str, Any]] = {
    "exclude-by-name": {"exclude": [{"name": "central"}]},
    "exclude-by-label": {"exclude": [{"selector": {"matchExpressions": [
        {"key": "residency", "operator": "NotIn", "values": ["us"]}]}}]},
    "max-levels": {"maxLevels": 2},  # east, then west (east's failoverOrder): central would be the third
}


@pytest.mark.parametrize("variant", list(RESIDENCY))
async def test_traffic_never_leaves_the_allowed_clusters_and_fails_fast(bed: Bed, variant: str) -> None:
    """Without the policy central takes over when east and west are down; with it, requests are refused at once
    and central never answers, until east and west are back."""
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    try:
        async with restored_at_end(bed.kill("east", "west")) as fault:
            await asyncio.sleep(1)
            await fault.inject()
            unpoliced_at = load.mark("east and west down, no policy")
            await _until(settles(load, unpoliced_at, _from("central")), 30,
                         "central to take over while east and west are down (no policy yet)", _explain(load))
            created_at = load.mark("creating the policy")
            async with _applied(bed, f"residency-{variant}", RESIDENCY[variant]):
                accepted = await _until_accepted(bed, f"residency-{variant}")
                assert (accepted["status"], accepted["reason"]) == ("True", "Accepted"), accepted
                policy_at = load.mark("accepted")
                await _until(settles(load, policy_at, _refused), 30,
                             "every request refused with 503 once central is left out", _explain(load))
                await fault.restore()
                await _until(settles(load, load.mark("restored"), _from("east")), 30,
                             "every answer from east once its backends are back", _explain(load))
                # Now the user's case: the policy is in force when the allowed clusters fail.
                fault_at = load.mark("fault")
                await fault.inject()
                await _until(settles(load, fault_at, _refused, 0.5), 30,
                             "every request refused with 503 once east and west are down", _explain(load))
                window_at = load.mark("window")
                await asyncio.sleep(2)
                window_end = load.mark("window end")
                restore_at = load.mark("restore")
                await fault.restore()
                back_at = load.mark("restored")
                await _until(settles(load, back_at, _from("east")), 30, "every answer from east once it is back",
                             _explain(load))
                await asyncio.sleep(0.5)
                end_at = load.mark("end")
    finally:
        samples = await asyncio.to_thread(load.stop)
    down, window = between(samples, fault_at, restore_at), between(samples, window_at, window_end)
    latencies = [s.latency for s in window]
    p50, p99, worst = percentile(latencies, 0.5), percentile(latencies, 0.99), max(latencies, default=None)
    print(f"\n[{variant}] without the policy (east, west down): {_summary(between(samples, unpoliced_at, created_at))}"
          f"\n[{variant}] policy in force, east and west down: {_summary(down)}; refusals p99 "
          f"{_ms(percentile([s.latency for s in down if not s.ok], 0.99))}"
          f"\n[{variant}] settled window: {_summary(window)}; latency p50 {_ms(p50)}, p99 {_ms(p99)}, max {_ms(worst)}"
          f"\n[{variant}] after the restore: {_summary(between(samples, back_at, end_at))}")
    assert _answers(between(samples, unpoliced_at, created_at), "central"), "central was there to take over"
    # Not one request reached central while the policy was in force (from the second kill to the end).
    assert _answers(between(samples, fault_at), "central") == [], _summary(between(samples, fault_at))
    assert len(window) > RATE * 1.5
    assert all(s.status == 503 for s in window), _summary(window)
    assert p99 is not None
    assert p99 < FAST < PER_TRY_TIMEOUT, f"refusals took {p99:.3f} s at p99: the client waited for a level"
    assert failures(between(samples, back_at + 1.0)) == [], _summary(between(samples, back_at))
