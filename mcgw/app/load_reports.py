"""The Envoys' load reports and what mcgw makes of them, the same in ``mcgw run`` and standalone.

Which cluster serves each Gateway's traffic (the traffic view behind ``/api/status``, the dashboard and the
traffic metrics), and capacity-based overflow (FailoverPolicy ``capacity``) decided from the same reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from mcgw.admin.metrics import CapacityCollector, TrafficCollector
from mcgw.admin.status_view import traffic_document
from mcgw.runtime.capacity import CapacityGovernor, CapacityLoop
from mcgw.runtime.reconciler import Reconciler
from mcgw.runtime.traffic import TrafficTracker, load_reporting
from xdsserver import LoadReporting, SnapshotCache


class LoadReports:
    """Owns the traffic view and the capacity governor; ``notify`` is called on every failover event."""

    def __init__(self, registry: CollectorRegistry, notify: Callable[[], None]) -> None:
        self.traffic = TrafficTracker(on_event=lambda _: notify())
        registry.register(TrafficCollector(self.traffic, time.time))
        self.governor = CapacityGovernor()
        registry.register(CapacityCollector(self.governor))
        self._capacity: CapacityLoop | None = None

    def reporting(self, cache: SnapshotCache, interval: float = 1.0) -> LoadReporting:
        """The xDS server's load reporting: the reports go into the traffic view, then to the capacity loop."""
        return load_reporting(self.traffic, cache, interval, self._after_report)

    def steer(self, reconciler: Reconciler) -> None:
        """Hands capacity decisions to ``reconciler`` from now on (reports before it only feed the view)."""
        self._capacity = CapacityLoop(self.governor, self.traffic, reconciler)

    def document(self) -> dict[str, Any]:
        """The ``traffic`` section of ``/api/status``."""
        return traffic_document(self.traffic, time.time(), self.governor)

    def _after_report(self, now: float) -> None:
        if self._capacity is not None:
            self._capacity.after_report(now)
