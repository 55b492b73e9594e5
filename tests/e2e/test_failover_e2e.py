"""Failover under steady load, end to end: ``mcgw run`` over three real clusters, a service exported from
each, east's gateway routing to the ServiceImport through a real Envoy, 200 requests/s against it.

Two beds, each running every test: ``host``, where the test starts east's Envoy on the host (provisioning
off) and sends to it on loopback; and ``provisioned``, where ``mcgw run`` provisions east's Gateway (a
Deployment's pod that east's pod runner runs as real Envoy, in a network namespace of its own) and the
traffic goes to the Gateway's address from east's load balancer, which forwards to that pod.

With mcgw's defaults (no FailoverPolicy) and east's ``failoverOrder: [west, central]``:
- killing east's backends, making them answer 503, or cutting east's pod network fails no request,
  and once traffic has moved every answer comes from west (the next priority), none from central;
- when east's backends are back, every answer comes from east again;
- with east and then west failed, answers walk east → west → central, in that order.

How long each shift took is printed, not asserted: speed goals live in ``benchmarks/failover``.
"""

from __future__ import annotations

import asyncio
import urllib.error
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.eventually import eventually_in_thread
from tests.e2e.failover_bed import (
    HTTP,
    RATE,
    Bed,
    answers,
    assert_lossless_failover,
    explain,
    failover_bed,
    fault_of,
    settled,
)
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.faults import restored_at_end, set_echo_mode
from tests.e2e.testbed.load import OpenLoopLoad, between, describe_failures, failures, served_by

# Each bed's namespaces: the clusters are shared, and the ServiceImport of one bed must be gone before the next.
NAMESPACES = {"host": ("shop-failover", "infra-failover"), "provisioned": ("shop-failover-prov", "infra-failover-prov")}


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["host", "provisioned"])
async def bed(request: pytest.FixtureRequest, clusterset: ClusterSet,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    variant: str = request.param
    async with failover_bed(HTTP, variant, NAMESPACES[variant], clusterset,
                            tmp_path_factory.mktemp(f"failover-{variant}")) as ready:
        yield ready


def test_echo_backend_fails_on_demand_and_recovers(clusterset: ClusterSet) -> None:
    backend = clusterset.start_echo("central", namespace="shop-echo-fault", pod="echo-fault")
    set_echo_mode(backend, "503")
    for path in ("/healthz", "/anything"):
        with pytest.raises(urllib.error.HTTPError) as failed:
            backend.get(path)
        assert failed.value.code == 503
    set_echo_mode(backend, "ok")
    assert backend.get("/healthz")["ok"] is True
    assert backend.get("/anything")["cluster"] == "central"


@pytest.mark.parametrize("kind", ["kill", "503", "blackhole"])
async def test_failover_under_steady_load_loses_no_request(bed: Bed, kind: str) -> None:
    await assert_lossless_failover(bed, fault_of(kind, bed, "east"), f"[{bed.variant}] {kind}")


async def test_three_levels_walk_the_failover_order(bed: Bed) -> None:
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    try:
        async with restored_at_end(fault_of("kill", bed, "east")) as east, \
                restored_at_end(fault_of("kill", bed, "west")) as west:
            await asyncio.sleep(1.5)
            east_at = load.mark("killing east")
            await east.inject()
            east_down = load.mark("east down")
            await eventually_in_thread(settled(load, east_at, "west"), "every answer from west once east is down",
                                       30, explain=explain(bed, load))
            west_at = load.mark("killing west")
            await west.inject()
            west_down = load.mark("west down")
            await eventually_in_thread(settled(load, west_at, "central"),
                                       "every answer from central once west is down", 30, explain=explain(bed, load))
            await asyncio.sleep(0.5)
            restore_at = load.mark("restore")
            await west.restore()
            await east.restore()
            back_at = load.mark("restored")
            await eventually_in_thread(settled(load, back_at, "east"), "every answer from east after the restore",
                                       30, explain=explain(bed, load))
    finally:
        samples = await asyncio.to_thread(load.stop)
    print(f"\n[{bed.variant}] three levels: {len(samples)} requests, {len(failures(samples))} failed; "
          f"east down: {served_by(between(samples, east_at, west_at))}, "
          f"west down too: {served_by(between(samples, west_at, restore_at))}")
    assert failures(samples) == [], describe_failures(samples)
    # Each level takes over only once the one before it has failed, and never answers again until the restore.
    assert all(s.completed > east_at for s in answers(samples, "west")), "west answered while east was up"
    assert all(s.completed > west_at for s in answers(samples, "central")), "central answered while west was up"
    assert answers(between(samples, east_down, restore_at), "east") == []
    assert answers(between(samples, west_down, restore_at), "west") == []
    assert answers(between(samples, east_down, west_at), "west"), "west took over from east"
    assert answers(between(samples, west_down, restore_at), "central"), "central took over from west"
