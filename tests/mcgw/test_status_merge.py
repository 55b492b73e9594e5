"""Status merging keeps transition times, foreign conditions and other controllers' route parents."""

from __future__ import annotations

from mcgw.providers.kubernetes.status_merge import (
    merge_condition_status,
    merge_conditions,
    merge_route_status,
    stored_generation_is_newer,
)


def _cond(kind: str, status: str, reason: str = "R", generation: int = 1) -> dict[str, object]:
    return {"type": kind, "status": status, "reason": reason, "message": "m", "observedGeneration": generation}


def test_transition_time_changes_only_with_status() -> None:
    stored = [{**_cond("Accepted", "True"), "lastTransitionTime": "T0"}, {**_cond("Ready", "True"),
                                                                          "lastTransitionTime": "T0"}]
    same = merge_conditions(stored, [_cond("Accepted", "True", reason="Other", generation=2)], "T1")
    assert same[0]["lastTransitionTime"] == "T0"
    assert same[0]["observedGeneration"] == 2
    flipped = merge_conditions(stored, [_cond("Accepted", "False")], "T1")
    assert flipped[0]["lastTransitionTime"] == "T1"
    # A condition type we do not set survives.
    assert [c["type"] for c in flipped] == ["Accepted", "Ready"]


def test_route_parents_of_other_controllers_are_kept() -> None:
    foreign = {"parentRef": {"name": "gw"}, "controllerName": "example.com/x", "conditions": []}
    ours_before = {"parentRef": {"name": "gw", "namespace": "infra"}, "controllerName": "mcgw.io/gateway-controller",
                   "conditions": [{**_cond("Accepted", "True"), "lastTransitionTime": "T0"}]}
    ours_now = {"parentRef": {"name": "gw", "namespace": "infra"}, "controllerName": "mcgw.io/gateway-controller",
                "conditions": [_cond("Accepted", "True")]}
    merged = merge_route_status({"parents": [foreign, ours_before]}, {"parents": [ours_now]}, "T1")
    assert merged["parents"][0] == foreign
    assert merged["parents"][1]["conditions"][0]["lastTransitionTime"] == "T0"


def test_newer_stored_generation_wins() -> None:
    stored = {"conditions": [_cond("Accepted", "True", generation=5)]}
    assert stored_generation_is_newer(stored, 4)
    assert not stored_generation_is_newer(stored, 5)
    assert not stored_generation_is_newer({}, 1)


def test_a_gateway_class_status_gets_our_supported_features_and_keeps_what_is_not_ours() -> None:
    stored = {"conditions": [{**_cond("Accepted", "Unknown", "Pending"), "lastTransitionTime": "T0"}],
              "supportedFeatures": [{"name": "Stale"}], "other": "kept"}
    ours = {"conditions": [_cond("Accepted", "True", "Accepted")], "supportedFeatures": [{"name": "Gateway"}]}
    merged = merge_condition_status(stored, ours, "T1")
    assert merged["supportedFeatures"] == [{"name": "Gateway"}]
    assert merged["other"] == "kept"
    assert merged["conditions"][0]["lastTransitionTime"] == "T1"
    # A status of conditions alone (FailoverPolicy) leaves every other stored field as it was.
    assert merge_condition_status(stored, {"conditions": []}, "T1")["supportedFeatures"] == [{"name": "Stale"}]
