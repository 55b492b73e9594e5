"""Standalone mode's gateways: one real Envoy per Gateway per cluster, each on its own loopback address.

Every Envoy binds the listener ports its Gateway declares on an address of its own in 127.0.0.0/8,
so three clusters can each have a gateway on port 8080 on one laptop. The address is written into
the Gateway's ``status.addresses``. A Gateway that asks for a loopback ``spec.addresses`` entry gets
it; otherwise addresses come from a pool, one per gateway, stable for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, render_bootstrap
from mcgw.dataplane.process import EnvoyError, EnvoyProcess
from mcgw.objects.model import Gateway
from mcgw.store import Store
from mcgw.support.netutil import free_port

log = logging.getLogger(__name__)

GatewayKey = tuple[str, str]
DEFAULT_POOL = ipaddress.IPv4Network("127.1.0.0/16")


class ServedGateways(Protocol):
    """What the fleet reads of a cluster's translation: which gateways it serves (``ClusterOutput`` has it)."""

    @property
    def resources(self) -> Mapping[GatewayKey, object]: ...


@dataclass
class ManagedEnvoy:
    cluster: str
    gateway: GatewayKey
    address: str
    process: EnvoyProcess
    restarts: int = 0


class EnvoyFleet:
    """Starts, supervises and stops the Envoys of standalone mode; a sink of the reconcile loop."""

    def __init__(self, store: Store, xds: XdsTarget, workdir: Path, pool: ipaddress.IPv4Network = DEFAULT_POOL,
                 log_level: str = "warn") -> None:
        self.store = store
        self.xds = xds
        self.workdir = workdir
        self.log_level = log_level
        self.envoys: dict[tuple[str, GatewayKey], ManagedEnvoy] = {}
        self._assigned: dict[tuple[str, GatewayKey], str] = {}
        self._free = (str(a) for a in pool.hosts() if int(a) & 0xFF not in (0, 255))
        self._lock = asyncio.Lock()

    # -- addresses (read by the reconcile loop before each translation) ----------------------------

    def _address_for(self, cluster: str, gateway: Gateway) -> str:
        key = (cluster, (gateway.metadata.namespace, gateway.metadata.name))
        if key not in self._assigned:
            requested = [a.value for a in gateway.spec.addresses if _is_loopback(a.value)]
            taken = set(self._assigned.values())
            choice = next((a for a in requested if a not in taken), None)
            while choice is None or choice in taken:
                choice = next(self._free)
            self._assigned[key] = choice
        return self._assigned[key]

    def addresses(self, cluster: str) -> dict[GatewayKey, list[str]]:
        """The address of every Gateway in ``cluster`` (for ``status.addresses``)."""
        return {key: [address] for key, address in self.bind_addresses(cluster).items()}

    def bind_addresses(self, cluster: str) -> dict[GatewayKey, str]:
        """Where each Gateway's Envoy binds its listeners."""
        return {(o.metadata.namespace, o.metadata.name): self._address_for(cluster, o)
                for o in self.store[cluster].objects() if isinstance(o, Gateway)}

    # -- processes ---------------------------------------------------------------------------------

    async def __call__(self, cluster: str, output: ServedGateways) -> None:
        """Match the running Envoys of ``cluster`` to the gateways the controller now serves."""
        async with self._lock:
            wanted = set(output.resources)
            for key in [k for k in self.envoys if k[0] == cluster and k[1] not in wanted]:
                await self._stop(key)
            for gateway in sorted(wanted):
                key = (cluster, gateway)
                if key not in self.envoys:
                    await self._start(key)

    async def _start(self, key: tuple[str, GatewayKey]) -> None:
        cluster, (namespace, name) = key
        address = self._assigned.get(key) or next(
            (a for a in self.addresses(cluster).get((namespace, name), [])), None)
        if address is None:
            return
        admin_port = free_port()
        node = NodeIdentity(cluster=cluster, namespace=namespace, gateway=name)
        bootstrap = render_bootstrap(node, admin_port, self.xds)
        label = f"{cluster}-{namespace}-{name}"
        try:
            process = await asyncio.to_thread(EnvoyProcess, label, bootstrap, admin_port, self.workdir,
                                              self.log_level)
        except (OSError, EnvoyError) as error:
            log.error("could not start Envoy for gateway %s/%s in cluster %s: %s", namespace, name, cluster, error,
                      extra={"cluster": cluster, "kind": "Gateway", "object": f"{namespace}/{name}"})
            return
        previous = self.envoys.get(key)
        self.envoys[key] = ManagedEnvoy(cluster, (namespace, name), address, process,
                                        previous.restarts + 1 if previous else 0)
        log.info("started Envoy for gateway %s/%s in cluster %s on %s (admin 127.0.0.1:%d, log %s)",
                 namespace, name, cluster, address, admin_port, process.log_path,
                 extra={"cluster": cluster, "kind": "Gateway", "object": f"{namespace}/{name}"})

    async def _stop(self, key: tuple[str, GatewayKey]) -> None:
        managed = self.envoys.pop(key)
        await asyncio.to_thread(managed.process.stop)
        log.info("stopped Envoy for gateway %s/%s in cluster %s", *managed.gateway, managed.cluster,
                 extra={"cluster": managed.cluster, "kind": "Gateway", "object": "/".join(managed.gateway)})

    async def supervise(self, interval: float = 2.0) -> None:
        """Restart an Envoy that died (and say so); runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            async with self._lock:
                for key, managed in list(self.envoys.items()):
                    if managed.process.alive():
                        continue
                    log.error("Envoy for gateway %s/%s in cluster %s exited (%s); restarting. Last log lines:\n%s",
                              *managed.gateway, managed.cluster, managed.process.popen.returncode,
                              managed.process.log_tail(10), extra={"cluster": managed.cluster, "kind": "Gateway",
                                                                   "object": "/".join(managed.gateway)})
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(managed.process.stop)
                    await self._start(key)

    async def wait_live(self, within: float = 30.0) -> None:
        """Wait until every Envoy has its listeners (admin /ready says LIVE)."""
        await asyncio.gather(*(asyncio.to_thread(m.process.wait_live, within) for m in self.envoys.values()))

    async def stop_all(self) -> int:
        """Stop every Envoy at once (each gets SIGTERM, then SIGKILL after a grace); returns how many ran."""
        async with self._lock:
            keys = list(self.envoys)
            await asyncio.gather(*(self._stop(key) for key in keys))
            return len(keys)

    def describe(self) -> Mapping[str, Mapping[str, object]]:
        """Per gateway: address, admin port, pid, restarts (for /api/status)."""
        return {f"{m.cluster}/{m.gateway[0]}/{m.gateway[1]}": {
            "address": m.address, "adminPort": m.process.admin_port, "pid": m.process.popen.pid,
            "alive": m.process.alive(), "restarts": m.restarts, "log": str(m.process.log_path)}
            for m in self.envoys.values()}


def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False
