"""``mcgw run``: the controller and xDS server against the member clusters' API servers.

Kubernetes informers (one per kind per member) → store → reconcile loop → snapshot cache → xDS
server; computed statuses go back through each cluster's status writer, which only writes while
this process holds that cluster's Lease. The admin server reports health, readiness and status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.aio.client import ApiClient
from kubernetes.aio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from mcgw.admin import AdminServer, ControllerMetrics, not_ready_reason, status_document
from mcgw.app.config import RunConfig
from mcgw.app.lifecycle import DEFAULT_DRAIN_GRACE, Lifecycle
from mcgw.app.load_reports import LoadReports
from mcgw.app.provisioning import Provisioning
from mcgw.app.xds_identity import XdsIdentities
from mcgw.dataplane.bootstrap import read_template
from mcgw.objects.kinds import KINDS, UNPROVISIONED_KINDS
from mcgw.objects.model import Gateway, Service
from mcgw.providers.kubernetes.ca_secret import CaMaterial, CaSecretError, load_or_create, read_ca
from mcgw.providers.kubernetes.cluster import MemberCluster, api_client_from_kubeconfig
from mcgw.providers.kubernetes.leader import LeaderElector
from mcgw.providers.kubernetes.mcs_writer import McsWriter
from mcgw.providers.kubernetes.status_writer import StatusWriter
from mcgw.provisioning.ca import CertificateAuthority
from mcgw.runtime.mcs_loop import McsController
from mcgw.runtime.mcs_metrics import McsMetrics
from mcgw.runtime.pipeline import ClusterOutput
from mcgw.runtime.reconciler import ClusterReport, GatewayKey, OutputSink, ReconcileOptions, Reconciler
from mcgw.store import ClusterStore, Store
from xdsserver import RotatingTls, SnapshotCache, XdsServer, spiffe_authorizer

log = logging.getLogger(__name__)

INSECURE_WARNING = ("xds.insecure: true: the xDS port serves plaintext and authorises nobody; any client that "
                    "reaches it can read every Gateway's configuration, private keys included")

# The label Gateway API implementations put on the resources they generate for a Gateway; an Envoy
# Service carrying it gives the Gateway its address when the Gateway does not ask for one.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


def gateway_addresses(store: Store, cluster: str) -> dict[GatewayKey, list[str]]:
    """Each Gateway's addresses: the ones its spec asks for, else the ClusterIP of its Envoy Service."""
    objects = store[cluster].objects()
    services: dict[GatewayKey, list[str]] = {}
    for obj in objects:
        if isinstance(obj, Service) and (gateway := obj.metadata.labels.get(GATEWAY_NAME_LABEL)):
            ip = obj.spec.cluster_ip
            if ip and ip != "None":
                services.setdefault((obj.metadata.namespace, gateway), []).append(ip)
    result = {}
    for obj in objects:
        if isinstance(obj, Gateway):
            key = (obj.metadata.namespace, obj.metadata.name)
            requested = [a.value for a in obj.spec.addresses]
            result[key] = requested or sorted(services.get(key, []))
    return result


def _uid_in(store: ClusterStore) -> Callable[[tuple[str, str, str]], str]:
    """The UID of an object as this cluster's store holds it: the status writer's memory is per object, not
    per name."""

    def uid(key: tuple[str, str, str]) -> str:
        found = store.get(key)
        return found.metadata.uid if found is not None else ""

    return uid


class Controller(Lifecycle):
    """Everything ``mcgw run`` runs, as an async context manager (the e2e tests start it in-process)."""

    def __init__(self, config: RunConfig, *, lost_cluster_ttl: float | None = None,
                 drain_grace: float = DEFAULT_DRAIN_GRACE) -> None:
        super().__init__()
        self.drain_grace = drain_grace
        if lost_cluster_ttl is None:
            lost_cluster_ttl = config.lost_cluster_ttl
        self.config = config
        # Without provisioning, the kinds it generates are neither watched nor needed in RBAC.
        self.kinds = KINDS if config.provisioning.enabled else UNPROVISIONED_KINDS
        self.store = Store([c.name for c in config.clusters], [kind.name for kind in self.kinds])
        self.cache = SnapshotCache()
        # xDS security (see docs/security.md): mcgw's CA by default (the server's credentials are set once the
        # CA is loaded, in _start), the user's certificate files with xds.tls, plaintext only when asked.
        tls = config.xds.tls.tls_config() if config.xds.tls else None
        self.registry = CollectorRegistry()  # one per controller: tests run several in one process
        self.metrics = ControllerMetrics(self.registry)
        self.load = LoadReports(self.registry, notify=lambda: self.admin.notify())
        self.xds = XdsServer(self.cache, registry=self.registry, tls=tls,
                             authorizer=None if config.xds.insecure else spiffe_authorizer(config.xds.trust_domain),
                             max_connection_age=config.xds.connection_age,
                             load_reporting=self.load.reporting(self.cache, config.xds.load_report_interval))
        self.identities: XdsIdentities | None = None
        self.members: dict[str, MemberCluster] = {}
        self.electors: dict[str, LeaderElector] = {}
        self.writers: dict[str, StatusWriter] = {}
        self.provisioning: Provisioning | None = None
        if config.provisioning.enabled:
            self.provisioning = Provisioning(config, self.store, self.registry, read_template(),
                                             lambda cluster, sink: self.reconciler.resend(cluster, sink),
                                             lambda cluster: self.reconciler.mark_dirty(cluster),
                                             lambda: self.xds.status.nodes())
        sinks: list[OutputSink] = [self._write_status, *([self.provisioning] if self.provisioning else [])]
        # Provisioned Gateways take their addresses and Programmed from what their Envoys are doing; without
        # provisioning, from spec.addresses or the Service labelled with the Gateway's name.
        self.reconciler = Reconciler(
            self.store, self.cache,
            ReconcileOptions(config.reconcile.debounce, config.reconcile.debounce_cap),
            addresses=None if self.provisioning else lambda cluster: gateway_addresses(self.store, cluster),
            dataplane=self.provisioning.dataplane if self.provisioning else None, sinks=sinks,
            on_report=self._translated, clusters={c.name: c.properties() for c in config.clusters},
            lost_cluster_ttl=lost_cluster_ttl)
        self.load.steer(self.reconciler)
        # MCS: ServiceExports of every cluster → ServiceImports and imported slices, written by each cluster's leader.
        self.mcs = McsController(self.store, lost_cluster_ttl=lost_cluster_ttl, debounce=config.reconcile.debounce,
                                 debounce_cap=config.reconcile.debounce_cap, metrics=McsMetrics(self.registry))
        self.admin = AdminServer(ready=self.reconciler.ready.is_set, status=self.status, registry=self.registry,
                                 not_ready_reason=lambda: not_ready_reason(self.store, self.reconciler),
                                 before_scrape=lambda: self.metrics.refresh(self.store, self.reconciler),
                                 snapshots=self.cache)
        self.xds_port = 0
        self.admin_port = 0
        self._released = ""

    async def _start(self) -> None:
        config = self.config
        # Registered in the reverse of the shutdown order: stop accepting, release the Leases, stop the
        # loops and informers, drain xDS.
        if config.xds.mode == "ca":
            await self._load_ca()
        elif config.xds.insecure:
            log.warning(INSECURE_WARNING)
        self.xds_port = await self.xds.start(config.xds.listen)
        self._stop_xds_gracefully(self.xds, self.drain_grace)
        log.info("xDS server (ADS, SotW and delta, %s) listening on %s:%d",
                 {"ca": "mTLS with mcgw's CA", "tls": "mTLS with xds.tls", "insecure": "PLAINTEXT"}[config.xds.mode],
                 config.xds.host, self.xds_port)
        self._stack.push_async_callback(self.reconciler.aclose)
        if self.provisioning is not None:
            self._stack.callback(self.provisioning.close)
        election = config.leader_election
        for cluster in config.clusters:
            member = await MemberCluster.from_kubeconfig(cluster.name, self.store, cluster.kubeconfig,
                                                         cluster.context, kinds=self.kinds)
            self.members[cluster.name] = member
            self._on_stop(member.stop, f"closed the connection to cluster {cluster.name}'s API server")
            is_leader: Callable[[], bool] = lambda: True  # noqa: E731 - election disabled: one writer by config
            if election.enabled:
                elector = LeaderElector(member.api, cluster.name, namespace=election.namespace,
                                        name=election.lease_name, lease_duration=election.lease_duration,
                                        renew_deadline=election.renew_deadline, retry_period=election.retry_period,
                                        on_change=self._leadership_changed)
                self.electors[cluster.name] = elector
                self._spawn(elector.run(), f"leader election {cluster.name}")
                is_leader = elector.is_leader_now
            self.writers[cluster.name] = StatusWriter(member.api, cluster.name, is_leader, metrics=self.metrics,
                                                      identity=_uid_in(self.store[cluster.name]))
            self.mcs.writers[cluster.name] = McsWriter(member.api, cluster.name, is_leader, metrics=self.mcs.metrics)
            if self.provisioning is not None:
                self.provisioning.add(cluster.name, member.api, is_leader)
            await member.start()
        self._spawn(self.reconciler.run(), "reconcile loop")
        if self.provisioning is not None:
            self._spawn(self.provisioning.watch_envoys(), "provisioned Envoys' xDS standing")
        self._stack.push_async_callback(self.mcs.aclose)
        self._spawn(self.mcs.run(), "MCS controller")
        if self.electors:
            self._on_stop(self._release_leases, lambda: self._released)
        self.admin_port = await self.admin.start(config.admin.host, config.admin.port)
        self._stop_accepting(self.admin)
        log.info("admin server on http://%s:%d (/healthz, /readyz, /metrics, /api/status)", config.admin.host,
                 self.admin_port)

    async def _load_ca(self) -> None:
        """mcgw's xDS CA from its Secret (created when missing), then the server's rotating credentials."""
        settings = self.config.xds
        cluster = self.config.ca_cluster()
        member = next(c for c in self.config.clusters if c.name == cluster)

        def generate() -> tuple[bytes, bytes]:
            ca = CertificateAuthority.generate()
            return ca.cert_pem, ca.key_pem()

        api = await api_client_from_kubeconfig(member.kubeconfig, member.context)
        try:
            material, created = await load_or_create(api, settings.ca.namespace, settings.ca.name,
                                                     create=settings.ca.create, generate=generate)
        except BaseException:
            await api.close()  # type: ignore[no-untyped-call]
            raise
        self._stack.push_async_callback(api.close)
        ca = self._ca_from(material)
        log.info("xDS CA %s Secret %s/%s in cluster %s", "created in" if created else "read from",
                 settings.ca.namespace, settings.ca.name, cluster)
        self.identities = XdsIdentities(ca, settings.trust_domain, dt.timedelta(seconds=settings.certificate_lifetime),
                                        self.config.server_hosts())
        self.xds.tls = RotatingTls(self.identities.server_certificate)
        if self.provisioning is not None:
            self.provisioning.identities = self.identities
        self._spawn(self._resync_ca(api, material), "xDS CA resync")

    def _ca_from(self, material: CaMaterial) -> CertificateAuthority:
        settings = self.config.xds.ca
        try:
            return CertificateAuthority.from_pem(material.cert, material.key, trust_pem=material.trust)
        except ValueError as error:
            raise ValueError(f"the xDS CA in Secret {settings.namespace}/{settings.name} of cluster "
                             f"{self.config.ca_cluster()}: {error}") from None

    async def _resync_ca(self, api: ApiClient, current: CaMaterial) -> None:
        """Read the CA Secret every ``xds.ca.resync`` seconds; a changed one that is usable replaces the CA
        (a rotation: docs/security.md), and one that is not is logged while the current CA stays."""
        settings = self.config.xds.ca
        where = f"Secret {settings.namespace}/{settings.name} of cluster {self.config.ca_cluster()}"
        while True:
            await asyncio.sleep(settings.resync)
            try:
                material = await read_ca(api, settings.namespace, settings.name)
            except (CaSecretError, ApiException, OSError, TimeoutError) as error:
                log.warning("could not read the xDS CA %s (keeping the current CA): %s", where,
                            error if isinstance(error, CaSecretError) else type(error).__name__)
                continue
            if material is None or (material.cert, material.key, material.trust) == (
                    current.cert, current.key, current.trust):
                if material is None:
                    log.warning("the xDS CA %s is gone; keeping the CA in memory", where)
                continue
            try:
                ca = self._ca_from(material)
            except ValueError as error:
                log.error("%s; keeping the current CA", error)
                current = material  # logged once per change, not every resync
                continue
            assert self.identities is not None
            signer_changed = material.cert != current.cert
            self.identities.replace_ca(ca)
            current = material
            log.info("xDS CA %s changed: %s; %s", where,
                     "new signing CA" if signer_changed else "same signing CA",
                     f"trusting {ca.trust_pem.count(b'BEGIN CERTIFICATE')} CA certificate(s)")
            if self.provisioning is not None:
                self.provisioning.credentials_changed()

    async def _release_leases(self) -> None:
        """Free the Leases held, so that another replica takes over within its retry period, not the lease duration."""
        held = sorted(name for name, elector in self.electors.items() if elector.is_leader)
        await asyncio.gather(*(elector.release() for elector in self.electors.values()))
        released = [name for name in held if self.electors[name].released]
        kept = [name for name in held if name not in released]
        if not held:
            self._released = "held no Lease: nothing to release"
        else:
            self._released = f"released the Lease in cluster(s) {', '.join(released) or 'none'}"
        if kept:
            self._released += (f"; could not release it in {', '.join(kept)}: it expires after "
                               f"{self.config.leader_election.lease_duration:g}s")

    def _leadership_changed(self, cluster: str, leading: bool) -> None:
        """A new term: write the latest computed statuses now (winning a Lease is no store event)."""
        if leading:
            self.reconciler.resend(cluster)

    async def _write_status(self, cluster: str, output: ClusterOutput) -> None:
        writer = self.writers.get(cluster)
        if writer is not None and self.store[cluster].available:
            await writer(cluster, output.statuses())

    def _translated(self, cluster: str, report: ClusterReport) -> None:
        self.metrics.observe_reconcile(cluster, report)
        if self.xds.lrs is not None:  # new ServiceImport clusters are reported from now on
            self.xds.lrs.update_interest()

    def status(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "mode": "run",
            "leader": {name: elector.is_leader_now() for name, elector in sorted(self.electors.items())},
            "informers": {name: [vars(i) for i in member.health.informers]
                          for name, member in sorted(self.members.items())},
            "provisioning": self.provisioning.status() if self.provisioning else "disabled",
            "xdsSecurity": self.xds_security(),
        }
        return status_document(self.store, self.reconciler, self.xds.status, extra, self.mcs.result,
                               self.load.document())


    def xds_security(self) -> dict[str, Any]:
        """How the xDS port is protected, for /api/status (an insecure port says so in ``warning``)."""
        settings = self.config.xds
        if settings.insecure:
            return {"mode": "insecure", "warning": INSECURE_WARNING}
        if settings.tls is not None:
            return {"mode": "mtls-files", "clientCa": str(settings.tls.client_ca)}
        return {"mode": "mtls", "caSecret": f"{self.config.ca_cluster()}/{settings.ca.namespace}/{settings.ca.name}",
                **(self.identities.status() if self.identities else {})}


async def run_controller(config: RunConfig, drain_grace: float = DEFAULT_DRAIN_GRACE) -> None:
    """Run until cancelled (the stop signal) or a background task fails; everything is stopped on the way out."""
    async with Controller(config, drain_grace=drain_grace) as controller:
        await controller.serve()
