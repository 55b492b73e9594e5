"""Static ``spec.addresses`` of a provisioned Gateway: which of them its Service can carry, and which it cannot.

A Service of type LoadBalancer carries one requested address (``spec.loadBalancerIP``, which load
balancer implementations still honour); ClusterIP and NodePort Services carry any number as
``spec.externalIPs``. With address pools configured, an address outside all of them is refused at
once: mcgw will not ask a load balancer for an address it cannot give. Entries that are not IP
addresses are the semantics' business (UnsupportedAddress, AddressNotUsable) and are left out here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from mcgw.objects.model import Gateway

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressPlan:
    load_balancer_ip: str | None = None
    external_ips: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (address, why it cannot be used)

    @property
    def requested(self) -> tuple[str, ...]:
        """The addresses the Service asks for."""
        return ((self.load_balancer_ip,) if self.load_balancer_ip else ()) + self.external_ips


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def plan_addresses(gateway: Gateway, service_type: str, pools: Sequence[IPNetwork] = ()) -> AddressPlan:
    usable: list[str] = []
    refused: list[tuple[str, str]] = []
    for address in gateway.spec.addresses:
        ip = _ip(address.value) if address.type == "IPAddress" else None
        if ip is None:
            continue
        if pools and not any(ip in pool for pool in pools):
            refused.append((address.value, f"outside the address pools this mcgw may use "
                                           f"({', '.join(str(p) for p in pools)})"))
        elif str(ip) in usable:
            continue
        else:
            usable.append(str(ip))
    if service_type == "LoadBalancer":
        first, rest = (usable[0], usable[1:]) if usable else (None, [])
        refused += [(value, f"a Service of type LoadBalancer carries one requested address ({first}): remove this "
                            "one, or use a Service type of ClusterIP or NodePort")
                    for value in rest]
        return AddressPlan(first, (), tuple(refused))
    return AddressPlan(None, tuple(usable), tuple(refused))
