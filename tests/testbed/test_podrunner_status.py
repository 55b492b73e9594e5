"""Pod status as a kubelet reports it: phase, conditions and their transition times, container states."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.testbed.podrunner.state import (
    ContainerRecord,
    Running,
    Terminated,
    Waiting,
    terminated_from_exit,
)
from tests.e2e.testbed.podrunner.status import PodView, build_status, container_status, pod_phase

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def _record(state: Any, ready: bool = False, last: Terminated | None = None) -> ContainerRecord:
    return ContainerRecord("c", "img:1", state, last, 1 if last else 0, ready, isinstance(state, Running))


def _view(*records: ContainerRecord, now: str = T1, initialized: bool = True, init: tuple[ContainerRecord, ...] = (),
          pod_ip: str = "198.18.1.130") -> PodView:
    return PodView("198.18.0.1", pod_ip, T0, True, initialized, list(init), list(records), now)


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


DONE_OK = Terminated(0, "Completed", T0, T1)
DONE_BAD = Terminated(2, "Error", T0, T1)


@pytest.mark.parametrize(("policy", "states", "phase"), [
    ("Always", [Waiting("ContainerCreating")], "Pending"),
    ("Always", [Running(T0), Waiting("ErrImagePull")], "Pending"),
    ("Always", [Running(T0)], "Running"),
    ("Always", [DONE_OK], "Running"),
    ("Never", [DONE_OK, DONE_OK], "Succeeded"),
    ("Never", [DONE_OK, DONE_BAD], "Failed"),
    ("OnFailure", [DONE_OK], "Succeeded"),
    ("OnFailure", [DONE_BAD], "Running"),
    ("Never", [Running(T0), DONE_OK], "Running"),
])
def test_phase(policy: str, states: list[Any], phase: str) -> None:
    assert pod_phase(policy, [], [_record(s) for s in states], True) == phase


def test_a_container_in_crash_loop_back_off_counts_as_stopped() -> None:
    looping = _record(Waiting("CrashLoopBackOff"), last=DONE_BAD)
    assert pod_phase("Always", [], [looping], True) == "Running"


def test_init_containers_hold_the_pod_pending() -> None:
    failed_init = _record(DONE_BAD)
    assert pod_phase("Always", [failed_init], [_record(Waiting("PodInitializing"))], False) == "Pending"
    assert pod_phase("Never", [failed_init], [_record(Waiting("PodInitializing"))], False) == "Failed"


def test_ready_pod_status() -> None:
    pod = {"spec": {}, "status": {"qosClass": "BestEffort"}}
    status = build_status(pod, _view(_record(Running(T0), ready=True)))
    assert status["phase"] == "Running"
    assert status["podIP"] == "198.18.1.130"
    assert status["podIPs"] == [{"ip": "198.18.1.130"}]
    assert status["hostIPs"] == [{"ip": "198.18.0.1"}]
    assert status["startTime"] == T0
    assert "qosClass" not in status  # a merge patch leaves what the API server set
    conditions = _conditions(status)
    assert {k: c["status"] for k, c in conditions.items()} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    (container,) = status["containerStatuses"]
    assert container["state"] == {"running": {"startedAt": T0}}
    assert container["lastState"] == {}
    assert container["ready"] is True
    assert container["started"] is True


def test_not_ready_and_transition_times() -> None:
    pod: dict[str, Any] = {"spec": {}, "status": {}}
    first = build_status(pod, _view(_record(Running(T0)), now=T0))
    ready = _conditions(first)["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [c]"
    pod["status"] = first
    same = build_status(pod, _view(_record(Running(T0)), now=T1))
    assert _conditions(same)["Ready"]["lastTransitionTime"] == T0  # no change, no new transition
    flipped = build_status(pod, _view(_record(Running(T0), ready=True), now=T1))
    assert _conditions(flipped)["Ready"]["lastTransitionTime"] == T1


def test_conditions_of_others_are_kept_and_readiness_gates_honoured() -> None:
    gate = {"type": "example.com/ready", "status": "False", "lastTransitionTime": T0}
    pod = {"spec": {"readinessGates": [{"conditionType": "example.com/ready"}]}, "status": {"conditions": [gate]}}
    status = build_status(pod, _view(_record(Running(T0), ready=True)))
    conditions = _conditions(status)
    assert conditions["example.com/ready"] == gate
    assert conditions["ContainersReady"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "ReadinessGatesNotReady"
    pod["status"]["conditions"] = [{**gate, "status": "True"}]
    assert _conditions(build_status(pod, _view(_record(Running(T0), ready=True))))["Ready"]["status"] == "True"


def test_terminal_pod_is_not_ready() -> None:
    status = build_status({"spec": {"restartPolicy": "Never"}, "status": {}}, _view(_record(DONE_OK)))
    assert status["phase"] == "Succeeded"
    assert _conditions(status)["Ready"]["reason"] == "PodCompleted"
    assert _conditions(status)["PodReadyToStartContainers"]["status"] == "False"


def test_pending_pod_without_address_and_with_init_containers() -> None:
    status = build_status({"spec": {}, "status": {}},
                          _view(_record(Waiting("PodInitializing")), initialized=False,
                                init=(ContainerRecord("init", "img:1", Running(T0)),), pod_ip=""))
    assert "podIP" not in status
    assert _conditions(status)["Initialized"]["message"] == "containers with incomplete status: [init]"
    assert status["initContainerStatuses"][0]["name"] == "init"


def test_container_states() -> None:
    waiting = container_status(_record(Waiting("ErrImagePull", 'Failed to pull image "x"')))
    assert waiting["state"] == {"waiting": {"reason": "ErrImagePull", "message": 'Failed to pull image "x"'}}
    looping = container_status(_record(Waiting("CrashLoopBackOff"), last=terminated_from_exit(-9, T0, T1)))
    assert looping["lastState"] == {"terminated": {"exitCode": 137, "reason": "Error", "signal": 9,
                                                   "startedAt": T0, "finishedAt": T1}}
    assert looping["restartCount"] == 1
    assert terminated_from_exit(0, T0, T1).reason == "Completed"
