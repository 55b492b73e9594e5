"""``mcgw run``'s provisioning: every reconcile output of a cluster becomes its Gateways' Envoy objects,
and what is observed of those Envoys goes back into the Gateways' status.

- A reconcile sink: the Gateway results of the pass (which Gateways are ours, with which parameters) are
  rendered by the pure renderer (``mcgw.provisioning``, in a worker thread, each Gateway again only when it
  or its parameters changed) and applied by the cluster's ``Provisioner`` (Lease holder only). A Gateway
  whose parameters cannot be used keeps what it runs. A sync that failed is tried again with backoff,
  one that found someone else's object in the way after ``FOREIGN_RECHECK``.
- The facts for status (``dataplane``): each Gateway's generated Service and Deployment as the informers
  show them, and how its Envoys stand with the xDS server. An Envoy is current when it ACKed what it was
  last sent (LDS and RDS), or a push is younger than ``ACK_GRACE`` and it ACKed before: a route change does
  not make a Gateway flap to Pending, but an Envoy that does not answer, or rejects, does. The xDS side
  has no store events, so ``watch_envoys`` looks every ``ENVOY_POLL`` seconds and re-evaluates a cluster
  whose Envoys' standing changed.
- xDS credentials (unless ``xds.insecure``): every provisioned Gateway also gets a Secret with its Envoys'
  client certificate (``XdsIdentities.for_gateway``), and the cluster is rendered again when the first
  of its certificates is due, so each is replaced at two thirds of its lifetime. A Gateway whose
  parameters cannot be used keeps what it runs, but its existing Secret is still renewed: its Envoys
  would otherwise lose the xDS server when the certificate expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes.aio import client
from prometheus_client import CollectorRegistry, Counter

from mcgw.app.config import RunConfig
from mcgw.app.xds_identity import XdsIdentities
from mcgw.objects.model import Deployment, EnvoyProxySpec, Gateway, Secret, Service
from mcgw.providers.kubernetes.provisioner import (
    FOREIGN_RECHECK,
    GatewayLabel,
    ObjectKey,
    Provisioner,
    SyncReport,
    is_ours,
)
from mcgw.provisioning import (
    RESERVED_PORTS,
    Target,
    credentials_name,
    gateway_label_value,
    object_name,
    provisioned_tls,
    render_credentials,
    render_gateway,
    settings_from,
)
from mcgw.provisioning.bootstrap import XdsTarget
from mcgw.runtime.pipeline import ClusterOutput
from mcgw.runtime.reconciler import GatewayKey
from mcgw.semantics.gateway.dataplane import Dataplane, EnvoyAcks
from mcgw.store import Store
from xdsserver import LISTENER, ROUTE, NodeGroup, NodeStatus

log = logging.getLogger(__name__)

RETRY_BASE = 1.0
RETRY_CAP = 60.0
ACK_GRACE = 5.0  # seconds an Envoy may take to ACK a push and still count as current
ENVOY_POLL = 0.5


def envoy_acks(nodes: Iterable[NodeStatus], now: float, grace: float = ACK_GRACE) -> dict[NodeGroup, EnvoyAcks]:
    """Per node group, how its connected Envoys stand (see the module docstring)."""
    counts: dict[NodeGroup, list[int]] = {}
    for node in nodes:
        connected_current_rejected = counts.setdefault(node.group, [0, 0, 0])
        connected_current_rejected[0] += 1
        listeners = node.types.get(LISTENER)
        if listeners is None or not listeners.acked_version:
            continue
        current = True
        for type_url in (LISTENER, ROUTE):
            status = node.types.get(type_url)
            if status is None:
                continue
            if status.nacked_version and status.nacked_version == status.sent_version:
                connected_current_rejected[2] += 1
                current = False
                break
            if status.acked_version != status.sent_version and (not status.acked_version
                                                                  or now - status.last_push > grace):
                current = False
        if current:
            connected_current_rejected[1] += 1
    return {group: EnvoyAcks(*values) for group, values in counts.items()}


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
                 resend: Callable[[str, Any], None], mark_dirty: Callable[[str], None],
                 nodes: Callable[[], Iterable[NodeStatus]]) -> None:
        host, port = config.provisioning_xds()
        pools = tuple(config.provisioning.address_pools)
        tls = None if config.xds.insecure else provisioned_tls(host)
        self.targets = {c.name: Target(c.name, XdsTarget(host, port, tls=tls), bootstrap_template, pools)
                        for c in config.clusters}
        # Set by the controller once the CA is loaded, before the first reconcile pass (None: insecure).
        self.identities: XdsIdentities | None = None
        self.store = store
        self.metrics = ProvisioningMetrics(registry)
        self.provisioners: dict[str, Provisioner] = {}
        self.reports: dict[str, SyncReport] = {}
        self._resend = resend
        self._mark_dirty = mark_dirty
        self._nodes = nodes
        self.pools = pools
        self.xds_replicas = config.provisioning.xds_replicas
        self._acks_used: dict[str, dict[GatewayKey, EnvoyAcks]] = {}  # what the last status of a cluster read
        self._rendered: dict[str, dict[GatewayKey, _Rendered]] = {}
        self._delay: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._renewals: dict[str, asyncio.TimerHandle] = {}

    def add(self, cluster: str, api: client.ApiClient, is_leader: Callable[[], bool]) -> None:
        self.provisioners[cluster] = Provisioner(api, cluster, is_leader, metrics=self.metrics)

    async def __call__(self, cluster: str, output: ClusterOutput) -> None:
        provisioner = self.provisioners.get(cluster)
        if provisioner is None or not self.store[cluster].available:
            return
        desired, held = await asyncio.to_thread(self._desired, cluster, output)
        self._renew_later(cluster)
        foreign_before = set(provisioner.foreign)
        report = await provisioner.sync(desired, held, self.store[cluster].objects())
        self.reports[cluster] = report
        if set(provisioner.foreign) != foreign_before:  # a Gateway is blocked, or no longer: its status says so
            self._mark_dirty(cluster)
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

    def credentials_changed(self) -> None:
        """The CA changed: render every cluster again, so each Secret gets the new trust bundle, and a
        certificate the new signer did not sign is reissued."""
        for cluster in self.targets:
            self._resend(cluster, self)

    def _renew_later(self, cluster: str) -> None:
        """Render ``cluster`` again when its first certificate is due (a re-render issues the new one)."""
        if (timer := self._renewals.pop(cluster, None)) is not None:
            timer.cancel()
        due = self.identities.next_renewal(cluster) if self.identities is not None else None
        if due is not None:
            delay = max(0.5, (due - dt.datetime.now(dt.UTC)).total_seconds() + 0.1)
            self._renewals[cluster] = asyncio.get_running_loop().call_later(delay, self._resend, cluster, self)

    def _credentials(self, cluster: str, gateway: Gateway, required: bool) -> dict[str, Any] | None:
        """The Secret with ``gateway``'s xDS client certificate; with ``required`` false, only when one of ours
        exists already (a held Gateway's is renewed, never created)."""
        if self.identities is None:
            return None
        namespace, name = gateway.metadata.namespace, gateway.metadata.name
        stored = self.store[cluster].get(("Secret", namespace, credentials_name(name)))
        stored = stored if isinstance(stored, Secret) and is_ours(stored.metadata.labels) else None
        if stored is None and not required:
            return None
        return render_credentials(gateway, self.identities.for_gateway(cluster, namespace, name, stored))

    def _desired(self, cluster: str, output: ClusterOutput) -> tuple[dict[ObjectKey, dict[str, Any]],
                                                                      set[GatewayLabel]]:
        """Worker-thread half: the desired objects of every Gateway of ours, and the Gateways held."""
        target = self.targets[cluster]
        previous = self._rendered.get(cluster, {})
        rendered: dict[GatewayKey, _Rendered] = {}
        held: set[GatewayLabel] = set()
        credentials: list[dict[str, Any]] = []
        for key, result in output.evaluation.gateways.items():
            if not result.parameters_valid:
                held.add((key[0], gateway_label_value(key[1])))
                if (secret := self._credentials(cluster, result.gateway, required=False)) is not None:
                    credentials.append(secret)
                continue
            if (secret := self._credentials(cluster, result.gateway, required=True)) is not None:
                credentials.append(secret)
            known = previous.get(key)
            if known is None or known.gateway is not result.gateway or known.parameters != result.parameters:
                known = _Rendered(result.gateway, result.parameters, tuple(
                    render_gateway(target, result.gateway, settings_from(result.parameters))))
            rendered[key] = known
        self._rendered[cluster] = rendered
        if self.identities is not None:
            self.identities.retain(cluster, output.evaluation.gateways)
        desired = {(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]): obj
                   for obj in [*credentials, *(obj for known in rendered.values() for obj in known.objects)]}
        return desired, held

    # -- facts for status ---------------------------------------------------------------------------------

    def _acks(self, cluster: str) -> dict[GatewayKey, EnvoyAcks]:
        acks = envoy_acks(self._nodes(), time.time())
        result = {}
        for (node_cluster, gateway), standing in acks.items():
            namespace, _, name = gateway.partition("/")
            if node_cluster == cluster:
                result[(namespace, name)] = standing
        return result

    def dataplane(self, cluster: str) -> dict[GatewayKey, Dataplane]:
        """What the Gateways of ``cluster`` have running: the reconciler's input for their status."""
        store = self.store[cluster]
        acks = self._acks_used[cluster] = self._acks(cluster)
        provisioner = self.provisioners.get(cluster)
        foreign = provisioner.foreign if provisioner is not None else {}
        result: dict[GatewayKey, Dataplane] = {}
        for obj in store.objects():
            if not isinstance(obj, Gateway):
                continue
            namespace, name = obj.metadata.namespace, obj.metadata.name
            generated = object_name(name)
            service = store.get(("Service", namespace, generated))
            deployment = store.get(("Deployment", namespace, generated))
            blocked = tuple(sorted(f"{kind} {namespace}/{generated}" for kind, ns, n in foreign
                                   if (ns, n) == (namespace, generated)))
            result[(namespace, name)] = Dataplane(
                service if isinstance(service, Service) and is_ours(service.metadata.labels) else None,
                deployment if isinstance(deployment, Deployment) and is_ours(deployment.metadata.labels) else None,
                acks.get((namespace, name), EnvoyAcks()), blocked, self.pools, generated, RESERVED_PORTS,
                self.xds_replicas > 1)
        return result

    async def watch_envoys(self) -> None:
        """Re-evaluate a cluster whenever its Envoys' standing differs from what its status last read."""
        while True:
            await asyncio.sleep(ENVOY_POLL)
            for cluster, used in list(self._acks_used.items()):
                if self._acks(cluster) != used:
                    self._mark_dirty(cluster)

    def status(self) -> dict[str, Any]:
        """What /api/status shows: per cluster, the last sync and the names someone else's objects hold."""
        return {cluster: {"applied": report.applied, "deleted": report.deleted, "failed": report.failed,
                          "deferred": report.deferred,
                          "foreign": [f"{kind} {namespace}/{name}" for kind, namespace, name in report.foreign]}
                for cluster, report in sorted(self.reports.items())}

    def close(self) -> None:
        for timers in (self._timers, self._renewals):
            for timer in timers.values():
                timer.cancel()
            timers.clear()
