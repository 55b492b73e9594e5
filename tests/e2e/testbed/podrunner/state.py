"""What the runner knows about one container: the facts a Pod's status is built from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def rfc3339(timestamp: float) -> str:
    """A metav1.Time: seconds precision, UTC."""
    return dt.datetime.fromtimestamp(int(timestamp), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(timestamp: float) -> str:
    """A metav1.MicroTime (Lease renewTime)."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: str


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    signal: int | None = None
    message: str = ""


State = Waiting | Running | Terminated


def terminated_from_exit(returncode: int, started_at: str, finished_at: str, message: str = "") -> Terminated:
    """A runtime's report of an exit: a signal ``n`` reads as exit code 128+n, as the shell shows it."""
    if returncode < 0:
        return Terminated(128 - returncode, "Error", started_at, finished_at, -returncode, message)
    return Terminated(returncode, "Completed" if returncode == 0 else "Error", started_at, finished_at, None, message)


@dataclass
class ContainerRecord:
    """One container of a pod, as its status reports it."""

    name: str
    image: str
    state: State
    last_terminated: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
