"""A Pod's status as a kubelet reports it, built from what the runner knows (pure).

The result is written with a JSON merge patch: ``conditions``, ``containerStatuses`` and the IP lists
are sent whole, so no stale ``waiting`` survives next to a ``running``; conditions the runner does not
own (readiness gates, DisruptionTarget, ...) are carried over from the pod as read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .state import ContainerRecord, Running, State, Terminated, Waiting

Json = dict[str, Any]
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def state_dict(state: State | None) -> Json:
    if isinstance(state, Waiting):
        return {"waiting": {"reason": state.reason, **({"message": state.message} if state.message else {})}}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    if isinstance(state, Terminated):
        terminated: Json = {"exitCode": state.exit_code, "reason": state.reason, "startedAt": state.started_at,
                            "finishedAt": state.finished_at}
        if state.signal is not None:
            terminated["signal"] = state.signal
        if state.message:
            terminated["message"] = state.message
        return {"terminated": terminated}
    return {}


def container_status(record: ContainerRecord) -> Json:
    status: Json = {
        "name": record.name,
        "image": record.image,
        "imageID": f"mcgw-testbed://{record.image}",
        "ready": record.ready,
        "started": record.started,
        "restartCount": record.restart_count,
        "state": state_dict(record.state),
        "lastState": state_dict(record.last_terminated),
    }
    if record.container_id:
        status["containerID"] = record.container_id
    return status


def pod_phase(restart_policy: str, init_records: Sequence[ContainerRecord], records: Sequence[ContainerRecord],
              initialized: bool, terminating: bool = False) -> str:
    """Pending, Running, Succeeded or Failed, by the kubelet's rules: a terminating pod whose containers have
    all stopped is Succeeded or Failed whatever its restart policy, as nothing will restart them."""
    if not initialized:
        failed_init = [r for r in init_records if isinstance(r.state, Terminated) and r.state.exit_code != 0]
        if failed_init and restart_policy == "Never":
            return "Failed"
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for record in records:
        if isinstance(record.state, Running):
            running += 1
        elif isinstance(record.state, Terminated):
            stopped += 1
            succeeded += record.state.exit_code == 0
        elif record.last_terminated is not None:
            stopped += 1
            succeeded += record.last_terminated.exit_code == 0
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if terminating:
        return "Succeeded" if stopped == succeeded else "Failed"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    if restart_policy == "Never":
        return "Failed"
    return "Running"


def is_terminal(phase: str) -> bool:
    return phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodView:
    """The runner's facts about one pod, at one moment."""

    host_ip: str
    pod_ip: str
    start_time: str
    sandbox_ready: bool
    initialized: bool
    init_records: Sequence[ContainerRecord]
    records: Sequence[ContainerRecord]
    now: str
    terminating: bool = False  # deleted: its containers are being stopped and none restarts


def _condition(kind: str, ok: bool, previous: Json, now: str, reason: str = "", message: str = "") -> Json:
    status = "True" if ok else "False"
    old = previous.get(kind)
    transition = old["lastTransitionTime"] if old and old.get("status") == status and \
        old.get("lastTransitionTime") else now
    condition: Json = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": transition}
    if not ok and reason:
        condition["reason"] = reason
        if message:
            condition["message"] = message
    return condition


def build_status(pod: Json, view: PodView) -> Json:
    """The ``status`` to merge-patch onto the pod."""
    spec = pod.get("spec", {})
    current = pod.get("status", {}) or {}
    previous = {c["type"]: c for c in current.get("conditions", []) or [] if "type" in c}
    phase = pod_phase(spec.get("restartPolicy", "Always"), view.init_records, view.records, view.initialized,
                      view.terminating)
    unready = [r.name for r in view.records if not r.ready]
    gates = [g.get("conditionType", "") for g in spec.get("readinessGates", []) or []]
    gates_open = [g for g in gates if previous.get(g, {}).get("status") != "True"]
    incomplete = [r.name for r in view.init_records
                  if not (isinstance(r.state, Terminated) and r.state.exit_code == 0)]
    if is_terminal(phase):
        ready_reason, ready_message, containers_ready = "PodCompleted", "", False
    else:
        containers_ready = not unready
        ready_reason, ready_message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    ready = containers_ready and not gates_open
    if containers_ready and gates_open:
        ready_reason, ready_message = "ReadinessGatesNotReady", \
            f"corresponding condition of pod readiness gate {gates_open[0]!r} does not exist."
    conditions = [
        _condition("PodReadyToStartContainers", view.sandbox_ready and not is_terminal(phase), previous, view.now),
        _condition("Initialized", view.initialized, previous, view.now, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _condition("Ready", ready, previous, view.now, ready_reason, ready_message),
        _condition("ContainersReady", containers_ready, previous, view.now, ready_reason,
                   ready_message if ready_reason != "ReadinessGatesNotReady" else ""),
        _condition("PodScheduled", True, previous, view.now),
    ]
    conditions += [c for kind, c in previous.items() if kind not in OWNED_CONDITIONS]
    status: Json = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "containerStatuses": [container_status(r) for r in view.records],
    }
    if view.init_records:
        status["initContainerStatuses"] = [container_status(r) for r in view.init_records]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    return status


def same_status(sent: Json | None, status: Json) -> bool:
    """Whether ``status`` says nothing new compared with what was last written."""
    return sent == status
