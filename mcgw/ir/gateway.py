"""A Gateway's shape in the IR: where it binds, its usable ports and their TLS chains."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Literal, NamedTuple

from mcgw import ir
from mcgw.objects.model import Secret
from mcgw.semantics.gateway.evaluate import GatewayKey
from mcgw.semantics.gateway.listeners import GatewayResult, ListenerResult


class PortShape(NamedTuple):
    port: int
    protocol: Literal["HTTP", "HTTPS"]
    tls: tuple[ir.TlsChainIR, ...]
    # Where listeners share the port, each listener hostname has a virtual host even without routes, so that
    # its requests never fall through to a less specific listener's routes (listener isolation).
    listener_hostnames: tuple[str, ...] = ()


class GatewayShape(NamedTuple):
    """What a Gateway's IR needs besides its routes: where it binds and its usable ports."""

    key: GatewayKey
    address: str
    ports: tuple[PortShape, ...]


def _tls_chain(listener: ListenerResult, secrets: Mapping[tuple[str, str], Secret]) -> ir.TlsChainIR:
    certificates = []
    for key in listener.certificate_secrets:
        data = secrets[key].data
        certificates.append((base64.b64decode(data["tls.crt"]).decode(), base64.b64decode(data["tls.key"]).decode()))
    hostname = listener.listener.hostname
    return ir.TlsChainIR((hostname,) if hostname else (), tuple(certificates))


def gateway_shape(key: GatewayKey, result: GatewayResult, secrets: Mapping[tuple[str, str], Secret],
                  bind_addresses: Mapping[tuple[str, str], str] | None) -> GatewayShape:
    """Ports of the usable listeners (the first one on a port decides its protocol); none at all is a
    shape too, so the Gateway's Envoys still get a (listener-less) configuration and turn ready."""
    protocols: dict[int, str] = {}
    chains: dict[int, list[ir.TlsChainIR]] = {}
    hostnames: dict[int, list[str | None]] = {}
    for listener in result.listeners:
        if listener.usable:
            port = listener.listener.port
            protocols.setdefault(port, listener.listener.protocol)
            chains.setdefault(port, [])
            hostnames.setdefault(port, []).append(listener.listener.hostname)
            if listener.listener.protocol == "HTTPS":
                chains[port].append(_tls_chain(listener, secrets))
    ports = tuple(PortShape(port, protocols[port], tuple(chains[port]),  # type: ignore[arg-type]
                            tuple(sorted({h for h in hostnames[port] if h})) if len(hostnames[port]) > 1 else ())
                  for port in sorted(protocols))
    return GatewayShape(key, (bind_addresses or {}).get(key, "0.0.0.0"), ports)


def gateway_ir(cluster: str, shape: GatewayShape,
               virtual_hosts: Mapping[int, tuple[ir.VirtualHostIR, ...]]) -> ir.GatewayIR:
    """A Gateway's IR: one HTTP listener per port, with the virtual hosts bound there (by port), and an
    empty one for each listener hostname of a shared port that has none."""
    ns, name = shape.key
    return ir.GatewayIR(cluster, ns, name, shape.address, tuple(
        ir.HTTPListenerIR(f"{ns}/{name}/{p.port}", p.port, p.protocol,
                          _with_listener_hostnames(f"{ns}/{name}/{p.port}", virtual_hosts.get(p.port, ()),
                                                   p.listener_hostnames), p.tls)
        for p in shape.ports))


def _with_listener_hostnames(port_name: str, vhosts: tuple[ir.VirtualHostIR, ...],
                             listener_hostnames: tuple[str, ...]) -> tuple[ir.VirtualHostIR, ...]:
    present = {vhost.hostname for vhost in vhosts}
    missing = [h for h in listener_hostnames if h not in present]
    if not missing:
        return vhosts
    empty = [ir.VirtualHostIR(f"{port_name}/{h}", h, ()) for h in missing]
    return tuple(sorted((*vhosts, *empty), key=lambda vhost: vhost.hostname))
