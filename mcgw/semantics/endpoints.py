"""A Service port's endpoints in its own cluster, from its EndpointSlices.

The backendRef names the Service port; the Service port's name picks the EndpointSlice port, whose
number is the target port. Ready endpoints are HEALTHY, serving-but-terminating ones DRAINING, and
the rest are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from mcgw import ir
from mcgw.ir.build import EndpointLookup
from mcgw.objects.model import EndpointSlice, Service


def service_endpoints(service: Service | None, slices: Iterable[EndpointSlice], port: int) -> tuple[ir.EndpointIR, ...]:
    """The endpoints of ``port`` of ``service`` from the EndpointSlices labelled with its name."""
    if service is None:
        return ()
    port_name = next((p.name for p in service.spec.ports if p.port == port), None)
    if port_name is None:
        return ()
    found: dict[tuple[str, int], ir.EndpointIR] = {}
    for endpoint_slice in sorted(slices, key=lambda s: s.metadata.name):
        target = next((p.port for p in endpoint_slice.ports if p.name == port_name and p.port), None)
        if target is None:
            continue
        for endpoint in endpoint_slice.endpoints:
            conditions = endpoint.conditions
            if conditions.ready is not False and not conditions.terminating:
                health = "HEALTHY"
            elif conditions.serving and conditions.terminating:
                health = "DRAINING"
            else:
                continue
            for address in endpoint.addresses:
                found.setdefault((address, target), ir.EndpointIR(address, target, health))  # type: ignore[arg-type]
    return tuple(found[key] for key in sorted(found))


def endpoint_lookup(services: Iterable[Service], slices: Iterable[EndpointSlice]) -> EndpointLookup:
    by_service = {(s.metadata.namespace, s.metadata.name): s for s in services}
    slices_of: dict[tuple[str, str], list[EndpointSlice]] = {}
    for endpoint_slice in slices:
        if endpoint_slice.service_name:
            slices_of.setdefault((endpoint_slice.metadata.namespace, endpoint_slice.service_name), []).append(
                endpoint_slice)

    @cache
    def lookup(namespace: str, name: str, port: int) -> tuple[ir.EndpointIR, ...]:
        return service_endpoints(by_service.get((namespace, name)), slices_of.get((namespace, name), ()), port)

    return lookup
