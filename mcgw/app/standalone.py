"""``mcgw standalone``: the whole controller on one machine, fed from files instead of API servers.

File provider → store → reconcile loop → snapshot cache → xDS server, plus (unless ``--no-envoy``)
one real Envoy per Gateway per cluster on its own loopback address, and the admin server. Statuses
are computed and served on ``/api/status``; there is no API server to write them to.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from mcgw.admin import AdminServer, ControllerMetrics, not_ready_reason, status_document
from mcgw.app.config import split_listen
from mcgw.app.lifecycle import DEFAULT_DRAIN_GRACE, Lifecycle
from mcgw.app.load_reports import LoadReports
from mcgw.dataplane.bootstrap import XdsTarget
from mcgw.dataplane.fleet import EnvoyFleet
from mcgw.objects.kinds import KINDS
from mcgw.providers.files.provider import FileProvider
from mcgw.runtime.mcs_loop import McsController
from mcgw.runtime.mcs_metrics import McsMetrics
from mcgw.runtime.reconciler import ClusterReport, OutputSink, ReconcileOptions, Reconciler
from mcgw.store import Store
from xdsserver import SnapshotCache, XdsServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StandaloneOptions:
    root: Path
    xds_listen: str = "127.0.0.1:18000"
    admin_listen: str = "127.0.0.1:19000"
    with_envoy: bool = True
    envoy_log_level: str = "warn"
    reconcile: ReconcileOptions = field(default_factory=ReconcileOptions)
    poll_interval: float = 0.25
    drain_grace: float = DEFAULT_DRAIN_GRACE


class Standalone(Lifecycle):
    """Everything ``mcgw standalone`` runs, as an async context manager (also used by the demo and tests)."""

    def __init__(self, options: StandaloneOptions) -> None:
        super().__init__()
        self.options = options
        self.provider = FileProvider(options.root, options.poll_interval)  # raises on a bad directory
        self.store = Store(self.provider.clusters, [kind.name for kind in KINDS])
        self.cache = SnapshotCache()
        self.registry = CollectorRegistry()  # one per instance: tests run several in one process
        self.metrics = ControllerMetrics(self.registry)
        self.load = LoadReports(self.registry, notify=lambda: self.admin.notify() if self.admin else None)
        self.xds = XdsServer(self.cache, registry=self.registry, load_reporting=self.load.reporting(self.cache))
        self.fleet: EnvoyFleet | None = None
        self.reconciler: Reconciler | None = None
        # MCS with no writers: there is no API server to write to; the result is served on /api/status.
        self.mcs = McsController(self.store, debounce=options.reconcile.debounce,
                                 debounce_cap=options.reconcile.debounce_cap, metrics=McsMetrics(self.registry))
        self.admin: AdminServer | None = None
        self.xds_port = 0
        self.admin_port = 0
        self._workdir: Path | None = None
        self._envoys_stopped = 0

    async def _start(self) -> None:
        # Registered in the reverse of the shutdown order: stop accepting, drain xDS, stop the Envoys,
        # remove the working directory.
        options = self.options
        if options.with_envoy:
            workdir = self._workdir = Path(tempfile.mkdtemp(prefix="mcgw-standalone-"))
            self._on_stop(lambda: asyncio.to_thread(shutil.rmtree, workdir, True),
                          f"removed the working directory {workdir}")
            self._on_stop(self._stop_envoys, lambda: f"stopped {self._envoys_stopped} Envoy(s)")
        self.xds_port = await self.xds.start(options.xds_listen)
        self._stop_xds_gracefully(self.xds, options.drain_grace)
        xds_host, _ = split_listen(options.xds_listen)
        log.info("xDS server (ADS, SotW and delta) listening on %s:%d", xds_host, self.xds_port)
        sinks: list[OutputSink] = []
        if self._workdir is not None:
            connect_host = "127.0.0.1" if xds_host in ("0.0.0.0", "", "::") else xds_host
            self.fleet = EnvoyFleet(self.store, XdsTarget(connect_host, self.xds_port), self._workdir,
                                    log_level=options.envoy_log_level)
            sinks.append(self.fleet)
        self.reconciler = Reconciler(
            self.store, self.cache, options.reconcile,
            addresses=self.fleet.addresses if self.fleet else None,
            bind_addresses=self.fleet.bind_addresses if self.fleet else None,
            sinks=sinks, on_report=self._translated,
            clusters={c.name: c for c in self.provider.properties.clusters})
        self.load.steer(self.reconciler)
        self._stack.push_async_callback(self.reconciler.aclose)
        self.provider.fill(self.store)
        self._spawn(self.reconciler.run(), "reconcile loop")
        self._stack.push_async_callback(self.mcs.aclose)
        self._spawn(self.mcs.run(), "MCS controller")
        self._spawn(self.provider.run(self.store), "file watcher")
        if self.fleet is not None:
            self._spawn(self.fleet.supervise(), "Envoy supervisor")
        reconciler = self.reconciler
        self.admin = AdminServer(ready=reconciler.ready.is_set, status=self.status, registry=self.registry,
                                 not_ready_reason=lambda: not_ready_reason(self.store, reconciler),
                                 before_scrape=lambda: self.metrics.refresh(self.store, reconciler),
                                 snapshots=self.cache)
        host, port = split_listen(options.admin_listen)
        self.admin_port = await self.admin.start(host, port)
        self._stop_accepting(self.admin)
        log.info("admin server on http://%s:%d (the dashboard at /; /healthz, /readyz, /metrics, /api/status)", host,
                 self.admin_port)

    def _translated(self, cluster: str, report: ClusterReport) -> None:
        self.metrics.observe_reconcile(cluster, report)
        if self.xds.lrs is not None:  # new ServiceImport clusters are reported from now on
            self.xds.lrs.update_interest()

    async def _stop_envoys(self) -> None:
        self._envoys_stopped = await self.fleet.stop_all() if self.fleet is not None else 0

    def status(self) -> dict[str, Any]:
        """The /api/status document, plus standalone's own facts (file errors, Envoys)."""
        assert self.reconciler is not None
        extra: dict[str, Any] = {"mode": "standalone", "root": str(self.options.root),
                                 "fileErrors": dict(sorted(self.provider.errors.items())),
                                 "skippedDocuments": {cluster: list(skipped) for cluster, skipped
                                                      in sorted(self.provider.skipped.items())}}
        if self.fleet is not None:
            extra["envoys"] = self.fleet.describe()
        return status_document(self.store, self.reconciler, self.xds.status, extra, self.mcs.result,
                               self.load.document())

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until the first configuration is published and (with Envoy) every Envoy has its listeners."""
        assert self.reconciler is not None
        await asyncio.wait_for(self.reconciler.ready.wait(), within)
        if self.fleet is not None:
            wanted = {(cluster, gateway) for cluster, output in self.reconciler.outputs.items()
                      for gateway in output.resources}
            for _ in range(int(within * 20)):  # the fleet sink starts the Envoys of the first pass
                if wanted <= set(self.fleet.envoys):
                    break
                await asyncio.sleep(0.05)
            await self.fleet.wait_live(within)


async def run_standalone(options: StandaloneOptions) -> None:
    """Run until cancelled (the stop signal) or a background task fails; everything is stopped on the way out."""
    async with Standalone(options) as standalone:
        await standalone.guard(standalone.wait_ready())
        log.info("ready: serving %d gateway(s)", len(standalone.cache.groups()))
        await standalone.serve()
