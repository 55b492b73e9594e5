"""Load reports → per-ServiceImport traffic by level, the serving level, and failover events."""

from __future__ import annotations

import pytest

from mcgw.runtime.traffic import FailoverEvent, LocalityCounts, ServiceKey, TrafficTracker, service_of

CART = "serviceimport/shop/cart/80"
KEY = ServiceKey("east", "infra/public", "shop/cart:80")


def _report(tracker: TrafficTracker, at: float, east: int, west: int, node: str = "infra/public/a",
            errors: int = 0, cluster: str = CART) -> list[FailoverEvent]:
    return tracker.record(at, "east", "infra/public", node, 1.0, [(cluster, [
        LocalityCounts("east", 0, east - errors, errors, 1 if east else 0),
        LocalityCounts("west", 1, west, 0, 0)])])


def test_an_envoy_cluster_name_says_which_serviceimport_it_sends_to() -> None:
    assert service_of("serviceimport/shop/cart/80") == "shop/cart:80"
    assert service_of("serviceimport/shop/cart/80/grpc") == "shop/cart:80"
    assert service_of("serviceimport/shop/db/5432/policy/p/tcp") == "shop/db:5432"
    assert service_of("service/shop/cart/80") is None
    assert service_of("serviceimport/shop//80") is None
    assert service_of("mcgw-xds") is None


def test_rates_per_level_come_from_each_envoys_latest_report() -> None:
    tracker = TrafficTracker()
    for second in range(5):
        _report(tracker, float(second), east=200, west=0)
    (traffic,) = tracker.services(4.0)
    assert traffic.key == KEY
    assert traffic.serving_priority == 0
    east, west = traffic.levels
    assert (east.priority, east.clusters, east.requests_per_s, east.share) == (0, ("east",), 200.0, 1.0)
    assert (west.priority, west.clusters, west.requests_per_s, west.share) == (1, ("west",), 0.0, 0.0)


def test_the_replicas_of_a_gateway_add_up() -> None:
    tracker = TrafficTracker()
    _report(tracker, 1.0, east=100, west=0, node="infra/public/a")
    _report(tracker, 1.2, east=50, west=50, node="infra/public/b")
    _report(tracker, 2.0, east=100, west=0, node="infra/public/a")  # a's newer report replaces its older one
    (traffic,) = tracker.services(2.0)
    east, west = traffic.levels
    assert east.requests_per_s == 150.0
    assert west.requests_per_s == 50.0
    assert east.share == pytest.approx(0.75)


def test_a_move_to_the_next_level_is_one_failover_event_and_the_move_back_another() -> None:
    seen: list[FailoverEvent] = []
    tracker = TrafficTracker(on_event=seen.append)
    assert _report(tracker, 0.0, east=200, west=0) == []
    assert _report(tracker, 1.0, east=200, west=0) == []
    (event,) = _report(tracker, 2.0, east=20, west=180)
    assert (event.from_priority, event.to_priority, event.from_clusters, event.to_clusters) == (0, 1, ("east",),
                                                                                                 ("west",))
    assert event.share == 0.9
    assert event.requests_per_s == 200.0
    assert event.key == KEY
    assert _report(tracker, 3.0, east=0, west=200) == []  # still on west: no new event
    (back,) = _report(tracker, 4.0, east=200, west=0)
    assert (back.from_priority, back.to_priority) == (1, 0)
    assert list(tracker.events) == seen == [event, back]
    assert tracker.totals().failovers == {("east", "infra/public", "shop/cart:80"): 2}


def test_no_traffic_is_no_evidence_of_a_move() -> None:
    tracker = TrafficTracker()
    _report(tracker, 0.0, east=100, west=0)
    assert _report(tracker, 1.0, east=0, west=0) == []
    assert _report(tracker, 2.0, east=0, west=0) == []
    assert tracker.services(2.0)[0].serving_priority == 0


def test_totals_count_every_request_and_error_by_source_cluster_and_priority() -> None:
    tracker = TrafficTracker()
    _report(tracker, 0.0, east=100, west=3, errors=4)
    _report(tracker, 1.0, east=10, west=0)
    totals = tracker.totals()
    assert totals.requests == {("east", "infra/public", "shop/cart:80", "east", "0"): 110,
                               ("east", "infra/public", "shop/cart:80", "west", "1"): 3}
    assert totals.errors[("east", "infra/public", "shop/cart:80", "east", "0")] == 4


def test_variants_of_one_serviceimport_count_as_one_and_other_clusters_not_at_all() -> None:
    tracker = TrafficTracker()
    tracker.record(0.0, "east", "infra/public", "n", 1.0, [
        (CART, [LocalityCounts("east", 0, 10, 0, 0)]),
        (CART + "/grpc", [LocalityCounts("east", 0, 5, 0, 0)]),
        ("service/shop/local/80", [LocalityCounts("", 0, 99, 0, 0)])])
    (traffic,) = tracker.services(0.0)
    assert traffic.levels[0].requests_per_s == 15.0


def test_the_minute_window_forgets_old_reports() -> None:
    tracker = TrafficTracker(window=10.0)
    _report(tracker, 0.0, east=100, west=0)
    assert tracker.services(5.0)[0].levels[0].requests_per_s_1m > 0
    assert tracker.services(11.0) == []


def test_the_event_history_is_bounded() -> None:
    tracker = TrafficTracker(history=3)
    for second in range(10):
        _report(tracker, float(second), east=200 if second % 2 else 0, west=0 if second % 2 else 200)
    assert len(tracker.events) == 3
    assert tracker.totals().failovers[KEY.labels()] == 9


def test_windows_must_make_sense() -> None:
    with pytest.raises(ValueError, match="current"):
        TrafficTracker(window=1.0, current=2.0)


def test_the_metrics_say_what_the_reports_said() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from mcgw.admin.metrics import TrafficCollector

    tracker = TrafficTracker()
    registry = CollectorRegistry()
    now = [0.0]
    registry.register(TrafficCollector(tracker, lambda: now[0]))
    _report(tracker, 0.0, east=100, west=0, errors=2)
    _report(tracker, 1.0, east=10, west=190)
    now[0] = 1.0
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for sample in family.samples}
    service = (("cluster", "east"), ("gateway", "infra/public"), ("service", "shop/cart:80"))

    def at(name: str, source: str | None = None, priority: str | None = None) -> float:
        extra = () if source is None else (("priority", priority), ("source_cluster", source))
        return samples[(name, tuple(sorted((*service, *extra))))]

    assert at("mcgw_upstream_requests_total", "east", "0") == 110
    assert at("mcgw_upstream_requests_total", "west", "1") == 190
    assert at("mcgw_upstream_errors_total", "east", "0") == 2
    assert at("mcgw_upstream_requests_in_flight", "east", "0") == 1
    assert at("mcgw_upstream_serving_priority") == 1
    assert at("mcgw_failovers_total") == 1
