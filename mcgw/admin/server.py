"""The admin HTTP server: liveness, readiness, Prometheus metrics, the status API and the live dashboard.

It only reads through the callables it is given, so the controller, standalone mode and tests can
each plug in their own notion of "ready" and their own status document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.log import access_logger
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mcgw.admin.config_dump import TYPES, UnknownNodeGroup, config_dump, node_groups
from mcgw.admin.dashboard import STATIC_FILES, dashboard_document, event_stream_message, static_file
from xdsserver import SnapshotCache

NOT_READY = "waiting for the initial list of every reachable member cluster"


class AdminServer:
    """``/healthz``, ``/readyz``, ``/metrics``, ``/api/status`` and the dashboard (``/``) over aiohttp.

    ``not_ready_reason`` explains a 503 from ``/readyz``; ``before_scrape`` runs before each
    ``/metrics`` answer (to refresh gauges that are read from state, see ``ControllerMetrics.refresh``).
    The dashboard's event stream sends its document every ``push_interval`` seconds, and at once after
    ``notify()`` (a failover event).
    """

    def __init__(self, ready: Callable[[], bool], status: Callable[[], dict[str, Any]],
                 registry: CollectorRegistry | None = None, *,
                 not_ready_reason: Callable[[], str] | None = None,
                 before_scrape: Callable[[], None] | None = None, access_log: bool = False,
                 snapshots: SnapshotCache | None = None, push_interval: float = 1.0) -> None:
        self.ready = ready
        self.push_interval = push_interval
        self._changed = asyncio.Event()
        self._stopping = False
        self.snapshots = snapshots
        self.status = status
        self.registry = registry if registry is not None else REGISTRY
        self.not_ready_reason = not_ready_reason
        self.before_scrape = before_scrape
        self.access_log = access_log  # off by default: probes and scrapes would flood the log
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/config_dump", self._config_dump)
        app.router.add_get("/", self._page)
        for name in STATIC_FILES:
            app.router.add_get(f"/{name}", self._page)
        app.router.add_get("/api/dashboard", self._dashboard)
        app.router.add_get("/api/dashboard/events", self._dashboard_events)
        return app

    def notify(self) -> None:
        """Push the dashboard's document to every open event stream now."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def dashboard(self) -> dict[str, Any]:
        status = self.status()
        return dashboard_document(status, status.get("traffic") or {})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (port 0 picks a free one) and return the bound port."""
        runner = web.AppRunner(self.application(), access_log=access_logger if self.access_log else None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host or None, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        self._stopping = True
        self.notify()  # open event streams end now, not after their interval
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"ready": True})
        reason = (self.not_ready_reason() if self.not_ready_reason else "") or NOT_READY
        return web.json_response({"ready": False, "reason": reason}, status=503)

    async def _metrics(self, _: web.Request) -> web.Response:
        if self.before_scrape is not None:
            self.before_scrape()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, _: web.Request) -> web.Response:
        text = json.dumps(self.status(), sort_keys=True, indent=2) + "\n"
        return web.Response(text=text, content_type="application/json")

    async def _page(self, request: web.Request) -> web.Response:
        name = request.path.lstrip("/") or "index.html"
        # No caching: the page and its script change with the controller's version, and they are small.
        return web.Response(body=static_file(name), content_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-cache"})

    async def _dashboard(self, _: web.Request) -> web.Response:
        return web.json_response(self.dashboard())

    async def _dashboard_events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        number = 0
        try:
            while not self._stopping:
                number += 1
                await response.write(event_stream_message(self.dashboard(), number))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.push_interval)
        except ConnectionResetError:
            pass  # the page was closed
        return response

    async def _config_dump(self, request: web.Request) -> web.Response:
        """``?cluster=C&gateway=NS/NAME[&type=lds,rds,...]``: what that node group is served; without a
        gateway, the node groups there are."""
        if self.snapshots is None:
            return web.json_response({"error": "this server has no xDS snapshots"}, status=404)
        cluster, gateway = request.query.get("cluster", ""), request.query.get("gateway", "")
        if not gateway:
            return web.json_response({"nodeGroups": node_groups(self.snapshots)})
        if not cluster:
            matching = [g for g in node_groups(self.snapshots) if g.split(":", 1)[1] == gateway]
            if len(matching) != 1:
                return web.json_response({"error": f"gateway {gateway} is served in {len(matching)} clusters: "
                                                   "give cluster=", "nodeGroups": matching}, status=400)
            cluster = matching[0].split(":", 1)[0]
        types = [t for t in request.query.get("type", ",".join(TYPES)).split(",") if t]
        try:
            return web.json_response(config_dump(self.snapshots, cluster, gateway, types))
        except UnknownNodeGroup as error:
            return web.json_response({"error": str(error)}, status=404)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
