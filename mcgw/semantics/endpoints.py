"""Endpoints from EndpointSlices: which addresses serve a Service port, and in what health.

One reading of EndpointSlices for both uses: a Service's endpoints in its own cluster (the backendRef
names the Service port, whose name picks the EndpointSlice port; that port's number is the target
port) and a source cluster's endpoints of an exported Service. Ready endpoints are HEALTHY,
serving-but-terminating ones DRAINING, and the rest are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Literal, NamedTuple

from mcgw.objects.model import Endpoint as SliceEndpoint
from mcgw.objects.model import EndpointSlice, Service
from mcgw.semantics.gateway.limits import MAX_PORT, MIN_PORT, endpoint_address_ok

# UNHEALTHY only for not-ready endpoints a gradual spillover counts as lost capacity (unready_endpoints).
Health = Literal["HEALTHY", "DRAINING", "UNHEALTHY"]


class Endpoint(NamedTuple):
    """``zone`` is the EndpointSlice's, ``for_zones`` its topology hints (the zones it should serve)."""

    address: str
    port: int
    health: Health
    zone: str = ""
    for_zones: tuple[str, ...] = ()


# (namespace, service, port) -> endpoints of that Service port in this cluster
EndpointLookup = Callable[[str, str, int], tuple[Endpoint, ...]]


def endpoint_health(endpoint: SliceEndpoint) -> Health | None:
    """HEALTHY when ready (unset counts as ready), DRAINING when serving while terminating, else None."""
    conditions = endpoint.conditions
    if conditions.ready is not False and not conditions.terminating:
        return "HEALTHY"
    if conditions.serving and conditions.terminating:
        return "DRAINING"
    return None


def target_port(endpoint_slice: EndpointSlice, port_name: str) -> int | None:
    """The slice's port number for the Service port named ``port_name``; a number outside 1..65535 counts as
    none, since Envoy would refuse the whole endpoint set over it."""
    for port in endpoint_slice.ports:
        if port.name == port_name and port.port:
            return port.port if MIN_PORT <= port.port <= MAX_PORT else None
    return None


def slice_endpoints(slices: Iterable[EndpointSlice], port_name: str, unready: bool = False) -> tuple[Endpoint, ...]:
    """The endpoints of the Service port named ``port_name``, at their target ports, sorted; an address
    listed in two slices (the slice controller moving it) counts once, as the first slice by name says.
    ``unready``: instead, the endpoints that are listed but neither ready nor draining, as UNHEALTHY."""
    found: dict[tuple[str, int], Endpoint] = {}
    for endpoint_slice in sorted(slices, key=lambda s: s.metadata.name):
        target = target_port(endpoint_slice, port_name)
        if target is None:
            continue
        for endpoint in endpoint_slice.endpoints:
            health = endpoint_health(endpoint)
            if unready:
                if health is not None or endpoint.conditions.terminating:
                    continue
                health = "UNHEALTHY"
            elif health is None:
                continue
            zone = endpoint.zone or ""
            hints = tuple(z.name for z in endpoint.hints.for_zones) if endpoint.hints is not None else ()
            for address in endpoint.addresses:
                if not endpoint_address_ok(address):  # Envoy would refuse the whole endpoint set
                    continue
                found.setdefault((address, target), Endpoint(address, target, health, zone, hints))
    return tuple(found[key] for key in sorted(found))


def service_endpoints(service: Service | None, slices: Iterable[EndpointSlice], port: int) -> tuple[Endpoint, ...]:
    """The endpoints of ``port`` of ``service`` from the EndpointSlices labelled with its name."""
    if service is None:
        return ()
    port_name = next((p.name for p in service.spec.ports if p.port == port), None)
    if port_name is None:
        return ()
    return slice_endpoints(slices, port_name)


def endpoint_lookup(services: Iterable[Service], slices: Iterable[EndpointSlice]) -> EndpointLookup:
    by_service = {(s.metadata.namespace, s.metadata.name): s for s in services}
    slices_of: dict[tuple[str, str], list[EndpointSlice]] = {}
    for endpoint_slice in slices:
        if endpoint_slice.service_name:
            slices_of.setdefault((endpoint_slice.metadata.namespace, endpoint_slice.service_name), []).append(
                endpoint_slice)

    @cache
    def lookup(namespace: str, name: str, port: int) -> tuple[Endpoint, ...]:
        return service_endpoints(by_service.get((namespace, name)), slices_of.get((namespace, name), ()), port)

    return lookup
