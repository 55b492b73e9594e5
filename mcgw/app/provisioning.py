"""``mcgw run``'s provisioning: every reconcile output of a cluster becomes its Gateways' Envoy objects.

A reconcile sink: the Gateway results of the pass (which Gateways are ours, with which parameters) are
rendered by the pure renderer (``mcgw.provisioning``, in a worker thread, each Gateway again only when it
or its parameters changed) and applied by the cluster's ``Provisioner`` (Lease holder only). A Gateway
whose parameters cannot be used keeps what it runs. A sync that failed is tried again with backoff,
one that found someone else's object in the way after ``FOREIGN_RECHECK``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.aio import client
from prometheus_client import CollectorRegistry, Counter

from mcgw.app.config import RunConfig
from mcgw.objects.model import EnvoyProxySpec, Gateway
from mcgw.providers.kubernetes.provisioner import FOREIGN_RECHECK, GatewayLabel, ObjectKey, Provisioner, SyncReport
from mcgw.provisioning import Target, gateway_label_value, render_gateway, settings_from
from mcgw.provisioning.bootstrap import XdsTarget
from mcgw.runtime.pipeline import ClusterOutput
from mcgw.runtime.reconciler import GatewayKey
from mcgw.store import Store

log = logging.getLogger(__name__)

RETRY_BASE = 1.0
RETRY_CAP = 60.0


class ProvisioningMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.writes = Counter("mcgw_provisioning_writes", "Objects provisioning applied or deleted",
                              ["cluster", "kind", "op"], registry=registry)
        self.failures = Counter("mcgw_provisioning_failures", "Objects provisioning could not write",
                                ["cluster", "kind"], registry=registry)

    def written(self, cluster: str, kind: str, op: str) -> None:
        self.writes.labels(cluster, kind, op).inc()

    def failed(self, cluster: str, kind: str) -> None:
        self.failures.labels(cluster, kind).inc()


@dataclass(frozen=True)
class _Rendered:
    gateway: Gateway
    parameters: EnvoyProxySpec | None
    objects: tuple[dict[str, Any], ...]


class Provisioning:
    """Every member cluster's provisioning; call it like a reconciler sink."""

    def __init__(self, config: RunConfig, store: Store, registry: CollectorRegistry, bootstrap_template: str,
                 resend: Callable[[str, Any], None]) -> None:
        host, port = config.provisioning_xds()
        pools = tuple(config.provisioning.address_pools)
        self.targets = {c.name: Target(c.name, XdsTarget(host, port), bootstrap_template, pools)
                        for c in config.clusters}
        self.store = store
        self.metrics = ProvisioningMetrics(registry)
        self.provisioners: dict[str, Provisioner] = {}
        self.reports: dict[str, SyncReport] = {}
        self._resend = resend
        self._rendered: dict[str, dict[GatewayKey, _Rendered]] = {}
        self._delay: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, cluster: str, api: client.ApiClient, is_leader: Callable[[], bool]) -> None:
        self.provisioners[cluster] = Provisioner(api, cluster, is_leader, metrics=self.metrics)

    async def __call__(self, cluster: str, output: ClusterOutput) -> None:
        provisioner = self.provisioners.get(cluster)
        if provisioner is None or not self.store[cluster].available:
            return
        desired, held = await asyncio.to_thread(self._desired, cluster, output)
        report = await provisioner.sync(desired, held, self.store[cluster].objects())
        self.reports[cluster] = report
        if report.failed:
            delay = self._delay[cluster] = min(RETRY_CAP, self._delay.get(cluster, RETRY_BASE / 2) * 2)
            log.info("provisioning in cluster %s: %d object(s) failed; trying again in %.0fs", cluster, report.failed,
                     delay, extra={"cluster": cluster})
            self._again(cluster, delay)
        else:
            self._delay.pop(cluster, None)
            if report.foreign:
                self._again(cluster, FOREIGN_RECHECK)

    def _again(self, cluster: str, delay: float) -> None:
        if (timer := self._timers.pop(cluster, None)) is not None:
            timer.cancel()
        self._timers[cluster] = asyncio.get_running_loop().call_later(delay, self._resend, cluster, self)

    def _desired(self, cluster: str, output: ClusterOutput) -> tuple[dict[ObjectKey, dict[str, Any]],
                                                                      set[GatewayLabel]]:
        """Worker-thread half: the desired objects of every Gateway of ours, and the Gateways held."""
        target = self.targets[cluster]
        previous = self._rendered.get(cluster, {})
        rendered: dict[GatewayKey, _Rendered] = {}
        held: set[GatewayLabel] = set()
        for key, result in output.evaluation.gateways.items():
            if not result.parameters_valid:
                held.add((key[0], gateway_label_value(key[1])))
                continue
            known = previous.get(key)
            if known is None or known.gateway is not result.gateway or known.parameters != result.parameters:
                known = _Rendered(result.gateway, result.parameters, tuple(
                    render_gateway(target, result.gateway, settings_from(result.parameters))))
            rendered[key] = known
        self._rendered[cluster] = rendered
        desired = {(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]): obj
                   for known in rendered.values() for obj in known.objects}
        return desired, held

    def status(self) -> dict[str, Any]:
        """What /api/status shows: per cluster, the last sync and the names someone else's objects hold."""
        return {cluster: {"applied": report.applied, "deleted": report.deleted, "failed": report.failed,
                          "deferred": report.deferred,
                          "foreign": [f"{kind} {namespace}/{name}" for kind, namespace, name in report.foreign]}
                for cluster, report in sorted(self.reports.items())}

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
