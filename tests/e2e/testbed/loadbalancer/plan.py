"""What the load balancer should do, computed from Services and EndpointSlices alone (no I/O).

Everything here is a pure function of the objects the watches deliver and of what is currently held,
so allocation, requested-address handling and endpoint selection are unit-tested without an API
server, root, or sockets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The test bed's own class: a load balancer of this class also takes Services that name no class.
LB_CLASS = "testbed.mcgw.dev/loadbalancer"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
FORWARDED_PROTOCOLS = ("TCP", "UDP")
# Endpoints are forwarded to only inside these: the test bed sends nothing beyond its own network.
TESTBED_NETWORKS = (ipaddress.IPv4Network("198.18.0.0/15"),)

Key = tuple[str, str]  # (namespace, name)
Target = tuple[str, int]  # (address, port)
ListenerKey = tuple[str, int]  # (protocol, port)


@dataclass(frozen=True)
class Pool:
    """An inclusive range of IPv4 addresses the load balancer may hand out."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"pool {self.first}-{self.last} is empty")

    def __contains__(self, address: object) -> bool:
        ip = parse_ipv4(address) if isinstance(address, str) else address
        return isinstance(ip, ipaddress.IPv4Address) and self.first <= ip <= self.last

    def __iter__(self) -> Iterator[ipaddress.IPv4Address]:
        for value in range(int(self.first), int(self.last) + 1):
            yield ipaddress.IPv4Address(value)

    def __len__(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def networks(self) -> list[ipaddress.IPv4Network]:
        """The fewest CIDRs that cover exactly the pool, for configuration that takes networks (mcgw's pools)."""
        return list(ipaddress.summarize_address_range(self.first, self.last))


def parse_ipv4(text: object) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(text).strip())
    except ValueError:
        return None


def parse_pool(text: str) -> Pool:
    """``A.B.C.D/N`` (its host addresses, as for any subnet) or ``A.B.C.D-E.F.G.H`` (both ends included)."""
    text = text.strip()
    if "-" in text:
        start, _, end = text.partition("-")
        first, last = parse_ipv4(start), parse_ipv4(end)
        if first is None or last is None:
            raise ValueError(f"pool {text!r} is not an IPv4 range A.B.C.D-E.F.G.H")
        return Pool(first, last)
    network = ipaddress.ip_network(text, strict=False)
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"pool {text!r} is not IPv4")
    if network.prefixlen >= 31:
        return Pool(network.network_address, network.broadcast_address)
    return Pool(network.network_address + 1, network.broadcast_address - 1)


def usable_samples(pool: Pool, count: int = 2) -> list[str]:
    """Addresses a static-address test may request: the top of the pool, which dynamic allocation
    (lowest free first) reaches last."""
    return [str(pool.last - i) for i in range(min(count, len(pool)))]


# -- the objects, as far as the load balancer cares ------------------------------------------------


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str
    port: int
    target_port: int | str | None


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    uid: str
    created: str
    type: str
    lb_class: str | None
    requested_ip: str | None
    ports: tuple[ServicePort, ...]
    ingress: tuple[tuple[str, str | None], ...]  # status.loadBalancer.ingress as (ip, ipMode)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def is_load_balancer(self) -> bool:
        return self.type == "LoadBalancer"


def parse_service(obj: Mapping[str, Any]) -> ServiceView:
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ports = []
    for port in spec.get("ports") or []:
        target = port.get("targetPort")
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        ports.append(ServicePort(str(port.get("name") or ""), str(port.get("protocol") or "TCP"),
                                 int(port.get("port") or 0), target))
    ingress = tuple((str(entry.get("ip") or ""), entry.get("ipMode"))
                    for entry in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                    if isinstance(entry, dict))
    return ServiceView(
        namespace=str(metadata.get("namespace") or ""), name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""), created=str(metadata.get("creationTimestamp") or ""),
        type=str(spec.get("type") or "ClusterIP"), lb_class=spec.get("loadBalancerClass") or None,
        requested_ip=(str(spec["loadBalancerIP"]).strip() or None) if spec.get("loadBalancerIP") else None,
        ports=tuple(ports), ingress=ingress)


@dataclass(frozen=True)
class SlicePort:
    name: str
    protocol: str
    port: int | None


@dataclass(frozen=True)
class SliceEndpoint:
    address: str
    ready: bool
    serving: bool = True
    terminating: bool = False

    @property
    def fallback(self) -> bool:
        """Serving while terminating: used only when the port has no ready endpoint left, as kube-proxy does."""
        return self.serving and self.terminating


@dataclass(frozen=True)
class SliceView:
    namespace: str
    name: str
    service: str
    address_type: str
    ports: tuple[SlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...]

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def service_key(self) -> Key:
        return (self.namespace, self.service)


def parse_slice(obj: Mapping[str, Any]) -> SliceView:
    """An EndpointSlice, its conditions read as kube-proxy reads them: ``ready`` unset counts as ready (the
    API says consumers should read an unknown state so), ``serving`` unset as ``ready``, ``terminating``
    unset as false. Only the first of an endpoint's addresses is used: they are fungible."""
    metadata = obj.get("metadata") or {}
    ports = tuple(SlicePort(str(p.get("name") or ""), str(p.get("protocol") or "TCP"),
                            int(p["port"]) if p.get("port") is not None else None)
                  for p in obj.get("ports") or [] if isinstance(p, dict))
    endpoints = []
    for endpoint in obj.get("endpoints") or []:
        addresses = endpoint.get("addresses") or []
        if not addresses:
            continue
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is None or conditions.get("ready") is True
        serving = ready if conditions.get("serving") is None else conditions.get("serving") is True
        endpoints.append(SliceEndpoint(str(addresses[0]), ready, serving, conditions.get("terminating") is True))
    return SliceView(str(metadata.get("namespace") or ""), str(metadata.get("name") or ""),
                     str((metadata.get("labels") or {}).get(SERVICE_NAME_LABEL) or ""),
                     str(obj.get("addressType") or ""), ports, tuple(endpoints))


# -- which Services are ours -----------------------------------------------------------------------


def is_ours(service: ServiceView, lb_class: str = LB_CLASS) -> bool:
    """A LoadBalancer Service naming our class, or naming none when ours is the default ``LB_CLASS``.

    A Service naming another class is left alone entirely (its status belongs to that implementation),
    so a second load balancer with a class of its own can run beside the default one in one cluster.
    """
    if not service.is_load_balancer:
        return False
    return service.lb_class == lb_class or (service.lb_class is None and lb_class == LB_CLASS)


# -- allocation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    """The address a Service gets, or why it gets none (then ``ip`` is None and status stays empty)."""

    ip: str | None
    failure: str = ""


def plan_allocations(services: Iterable[ServiceView], held: Mapping[Key, str], pool: Pool,
                     lb_class: str = LB_CLASS) -> dict[Key, Allocation]:
    """An address for every Service of ours, keeping what each already holds.

    ``held`` is what the Services have now (addresses bound by this process, or found in their status
    after a restart), so addresses never move while their Service keeps wanting them. Then requested
    addresses (``spec.loadBalancerIP``) are granted oldest Service first, and the rest get the lowest
    free address. A request outside the pool, or for an address another Service has, is refused.
    """
    ours = sorted((s for s in services if is_ours(s, lb_class)), key=lambda s: (s.created, s.namespace, s.name))
    taken: dict[str, Key] = {}
    result: dict[Key, Allocation] = {}
    for service in ours:
        current = held.get(service.key)
        if current is None or current not in pool or current in taken:
            continue
        if service.requested_ip is not None and parse_ipv4(service.requested_ip) != parse_ipv4(current):
            continue
        taken[current] = service.key
        result[service.key] = Allocation(current)
    for service in ours:
        if service.key in result or service.requested_ip is None:
            continue
        requested = parse_ipv4(service.requested_ip)
        if requested is None:
            result[service.key] = Allocation(None, f"spec.loadBalancerIP {service.requested_ip!r} is not an IPv4 "
                                                   "address")
        elif requested not in pool:
            result[service.key] = Allocation(None, f"requested address {requested} is outside the pool {pool}")
        elif str(requested) in taken:
            owner = taken[str(requested)]
            result[service.key] = Allocation(None, f"requested address {requested} is already used by Service "
                                                   f"{owner[0]}/{owner[1]}")
        else:
            taken[str(requested)] = service.key
            result[service.key] = Allocation(str(requested))
    free = (str(ip) for ip in pool if str(ip) not in taken)
    for service in ours:
        if service.key in result:
            continue
        address = next(free, None)
        if address is None:
            result[service.key] = Allocation(None, f"no free address left in the pool {pool}")
        else:
            taken[address] = service.key
            result[service.key] = Allocation(address)
    return result


def seeded_holdings(services: Iterable[ServiceView], bound: Mapping[Key, str], pool: Pool) -> dict[Key, str]:
    """What each Service holds: the address bound for it, else (after a restart) the pool address its
    status already shows, so a restarted load balancer keeps every Service's address."""
    held = dict(bound)
    for service in services:
        if service.key not in held:
            for ip, _mode in service.ingress:
                if ip in pool:
                    held[service.key] = ip
                    break
    return held


# -- status ----------------------------------------------------------------------------------------


def desired_ingress(allocation: Allocation | None) -> tuple[tuple[str, str | None], ...]:
    return () if allocation is None or allocation.ip is None else ((allocation.ip, "VIP"),)


def status_patch(ingress: tuple[tuple[str, str | None], ...]) -> dict[str, Any]:
    """A merge patch for ``services/status``: the ingress list as a whole, or its removal."""
    entries = [{"ip": ip, **({"ipMode": mode} if mode else {})} for ip, mode in ingress]
    return {"status": {"loadBalancer": {"ingress": entries or None}}}


def stale_ingress(service: ServiceView, pool: Pool) -> bool:
    """Whether a Service that is not ours still shows an address from our pool (it stopped being a
    LoadBalancer), so its status must be cleared. A Service of another class is never touched."""
    return not service.is_load_balancer and any(ip in pool for ip, _mode in service.ingress)


# -- endpoints and listeners -----------------------------------------------------------------------


def slice_port_for(port: ServicePort, slice_ports: Iterable[SlicePort]) -> SlicePort | None:
    """The slice port that serves ``port``: the one of the same name, as the EndpointSlice controller
    names them after the Service's ports; failing that, one whose number is the numeric targetPort."""
    candidates = [p for p in slice_ports if p.protocol == port.protocol and p.port is not None]
    for candidate in candidates:
        if candidate.name == port.name:
            return candidate
    target = port.port if port.target_port is None else port.target_port
    if isinstance(target, int):
        for candidate in candidates:
            if candidate.port == target:
                return candidate
    return None


def select_endpoints(port: ServicePort, slices: Iterable[SliceView],
                     allowed: Sequence[ipaddress.IPv4Network] = TESTBED_NETWORKS) -> tuple[Target, ...]:
    """The ready IPv4 endpoints of ``port`` inside ``allowed``, in a stable order, each address and port once.

    Without any ready one, the serving terminating ones: a Service whose pods are all shutting down (a
    rollout of one replica, a scale to zero) keeps answering while they drain, as kube-proxy falls back.
    A terminating endpoint gets no new connection while a ready one is left.
    """
    ready: set[Target] = set()
    draining: set[Target] = set()
    for endpoint_slice in slices:
        if endpoint_slice.address_type != "IPv4":
            continue
        slice_port = slice_port_for(port, endpoint_slice.ports)
        if slice_port is None or slice_port.port is None:
            continue
        for endpoint in endpoint_slice.endpoints:
            ip = parse_ipv4(endpoint.address)
            if ip is None or not any(ip in network for network in allowed):
                continue
            if endpoint.ready:
                ready.add((str(ip), slice_port.port))
            elif endpoint.fallback:
                draining.add((str(ip), slice_port.port))
    targets = ready or draining
    return tuple(sorted(targets, key=lambda t: (int(ipaddress.IPv4Address(t[0])), t[1])))


def plan_listeners(service: ServiceView, slices: Iterable[SliceView],
                   allowed: Sequence[ipaddress.IPv4Network] = TESTBED_NETWORKS
                   ) -> dict[ListenerKey, tuple[Target, ...]]:
    """Every TCP and UDP port of the Service that has an endpoint to send to (``select_endpoints``), with
    its targets.

    A port that has none is left out: nothing listens on it, so the kernel refuses connections at once,
    as kube-proxy rejects traffic to a Service without endpoints.
    """
    slices = list(slices)
    plan: dict[ListenerKey, tuple[Target, ...]] = {}
    for port in service.ports:
        if port.protocol not in FORWARDED_PROTOCOLS or not 0 < port.port < 65536:
            continue
        targets = select_endpoints(port, slices, allowed)
        if targets:
            plan[(port.protocol, port.port)] = targets
    return plan
