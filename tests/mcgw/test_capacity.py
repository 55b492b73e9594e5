"""Capacity-based overflow: the decision from load and capacity (with hysteresis), the governor fed by real
load reports through the traffic tracker, and the translation that shares the first two levels by it."""

from __future__ import annotations

import time

import pytest

from mcgw.objects.model import AnyObject
from mcgw.runtime.capacity import CapacityGovernor, next_share
from mcgw.runtime.pipeline import ClusterTranslator, translate_cluster
from mcgw.runtime.traffic import LocalityCounts, TrafficTracker
from tests.envoy_validate import validate
from tests.mcgw.test_failover_translate import CART, _load, _mcs, _of, _serialised, _v2

PORT_KEY = ("shop", "cart", 80)


@pytest.mark.parametrize(("current", "load", "capacity", "share"), [
    (0.0, 100, 200, 0.0),     # under capacity: all stays
    (0.0, 400, 200, 0.5),     # twice the capacity: half goes on
    (0.0, 201, 200, 0.005),   # any excess starts overflow
    (0.5, 390, 200, 0.5),     # 0.487 is within a step of 0.5: hold
    (0.5, 300, 200, 0.333),   # a step worth an EDS push
    (0.333, 195, 200, 0.333),  # just under capacity: hold (no flapping at the boundary)
    (0.333, 179, 200, 0.0),   # under 90 % of the capacity: all comes back
    (0.0, 50, 0, 1.0),        # no healthy endpoint on the first level: everything goes on
])
def test_next_share(current: float, load: float, capacity: float, share: float) -> None:
    assert next_share(current, load, capacity) == share


def _report(tracker: TrafficTracker, at: float, node: str, per_second: int) -> None:
    tracker.record(at, "east", "infra/public", node, 1.0,
                   [("serviceimport/shop/cart/80", [LocalityCounts("east", 0, per_second, 0, 0)])])


def test_the_governor_sums_every_gateway_envoy_and_decides_per_member_cluster() -> None:
    tracker, governor = TrafficTracker(), CapacityGovernor()
    now = time.time()
    for second in range(3):  # two Envoys of one Gateway, 150 req/s each: 300 against 200
        _report(tracker, now + second, "envoy-0", 150)
        _report(tracker, now + second, "envoy-1", 150)
    changed = governor.evaluate(now + 2, tracker.services(now + 2), {"east": {PORT_KEY: 200.0}})
    assert changed == {"east"}
    assert governor.overflow("east") == {PORT_KEY: 0.333}
    (decision,) = governor.decisions()
    assert (decision.load, decision.capacity, decision.since) == (300.0, 200.0, now + 2)
    # Nothing new: no change reported, the decision keeps its time.
    assert governor.evaluate(now + 2.5, tracker.services(now + 2.5), {"east": {PORT_KEY: 200.0}}) == set()
    # The load drops to 100 req/s: overflow ends.
    for second in range(3, 6):
        _report(tracker, now + second, "envoy-0", 50)
        _report(tracker, now + second, "envoy-1", 50)
    assert governor.evaluate(now + 5, tracker.services(now + 5), {"east": {PORT_KEY: 200.0}}) == {"east"}
    assert governor.overflow("east") == {}
    # The policy loses its capacity: the decision is dropped.
    governor.evaluate(now + 6, tracker.services(now + 6), {})
    assert governor.decisions() == []


def _capacity_policy() -> AnyObject:
    return _v2({"capacity": {"maxRequestsPerSecondPerEndpoint": 100}})


def test_translation_reports_the_first_levels_capacity_from_its_healthy_endpoints() -> None:
    clusters, objects = _load()
    output = translate_cluster("east", [*objects["east"], _capacity_policy()], mcs=_mcs(clusters, objects))
    assert output.capacities == {PORT_KEY: 100.0}  # east: one ready endpoint (the other is draining)
    total = _v2({"capacity": {"maxRequestsPerSecondPerEndpoint": 100, "maxRequestsPerSecond": 40}})
    assert translate_cluster("east", [*objects["east"], total], mcs=_mcs(clusters, objects)).capacities == {
        PORT_KEY: 40.0}
    assert translate_cluster("east", objects["east"], mcs=_mcs(clusters, objects)).capacities == {}


def test_an_overflow_decision_shares_priority_0_with_the_next_level_by_weight() -> None:
    clusters, objects = _load()
    east = [*objects["east"], _capacity_policy()]
    steady = translate_cluster("east", east, mcs=_mcs(clusters, objects))
    before = [(loc.get("priority", 0), loc["locality"]["subZone"], loc["loadBalancingWeight"])
              for loc in _of(steady, "ClusterLoadAssignment", CART)["endpoints"]]
    assert before == [(0, "east", 200), (1, "west", 200), (2, "central", 200)]  # endpoint counts x 100
    assert _of(steady, "Cluster", CART)["commonLbConfig"]["localityWeightedLbConfig"] == {}

    mcs = _mcs(clusters, objects)._replace(overflow={PORT_KEY: 0.25})
    spilling = translate_cluster("east", east, mcs=mcs)
    after = [(loc.get("priority", 0), loc["locality"]["subZone"], loc["loadBalancingWeight"])
             for loc in _of(spilling, "ClusterLoadAssignment", CART)["endpoints"]]
    assert after == [(0, "east", 750_000), (0, "west", 250_000), (1, "central", 200)]
    for messages in spilling.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # A decision for a backend without a capacity (a stale one) changes nothing.
    plain = translate_cluster("east", objects["east"], mcs=mcs)
    assert _serialised(plain) == _serialised(translate_cluster("east", objects["east"], mcs=_mcs(clusters, objects)))


def test_incremental_translation_equals_a_full_one_as_decisions_change() -> None:
    clusters, objects = _load()
    translator = ClusterTranslator("east")
    east = tuple(sorted([*objects["east"], _capacity_policy()], key=lambda o: o.key))
    for share in (0.0, 0.25, 0.5, 0.5, 0.0, 0.1) * 2:
        mcs = _mcs(clusters, objects)._replace(overflow={PORT_KEY: share} if share else {})
        incremental = translator.translate(east, mcs=mcs)
        full = translate_cluster("east", east, mcs=mcs)
        assert _serialised(incremental) == _serialised(full)
        assert incremental.capacities == full.capacities

