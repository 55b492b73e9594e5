"""A Gateway's shape in the IR: where it binds, its usable ports, their TLS chains and the certificates they name.

TLS chains name their certificates (``secret/<namespace>/<name>``, after the Kubernetes Secret), and so does
the client certificate the Gateway presents to backends; the contents are the Gateway's ``secrets``, apart,
so that a rotated certificate changes those and no listener or cluster. An HTTPS port's client validation
names its CA bundle the same way (``client-ca/<namespace>/<gateway>/<scope>``, after the frontend
configuration), its content in ``trusted_cas``, so that a changed CA ConfigMap changes no listener.

Its access log comes from its parameters (``spec.accessLog`` of its EnvoyProxy over its class's): on, as
JSON, for every request unless they say otherwise."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from typing import Literal, NamedTuple

from mcgw import ir
from mcgw.objects.model import EnvoyProxySpec, Secret
from mcgw.semantics.gateway.evaluate import GatewayKey
from mcgw.semantics.gateway.hostnames import owner
from mcgw.semantics.gateway.listeners import GatewayResult, ListenerResult

StreamKey = tuple[Literal["TCP", "UDP"], int]  # a TCP or UDP listener: (protocol, port)


class PortShape(NamedTuple):
    """One usable port. On a TLS port, ``tls`` has one chain per Gateway listener, without certificates for
    one that passes TLS through."""

    port: int
    protocol: Literal["HTTP", "HTTPS", "TLS"]
    tls: tuple[ir.TlsChainIR, ...]
    # Where listeners share the port, each listener hostname has a virtual host even without routes, so that
    # its requests never fall through to a less specific listener's routes (listener isolation).
    listener_hostnames: tuple[str, ...] = ()
    client_validation: ir.ClientValidationIR | None = None


class GatewayShape(NamedTuple):
    """What a Gateway's IR needs besides its routes: where it binds, its usable ports, their certificates."""

    key: GatewayKey
    address: str
    ports: tuple[PortShape, ...]
    secrets: tuple[ir.SecretIR, ...] = ()
    trusted_cas: tuple[ir.TrustedCaIR, ...] = ()
    client_certificate: str | None = None  # the SecretIR name presented to backends over TLS
    # (protocol, port) of every usable TCP and UDP listener, sorted: each is one Envoy listener of its own.
    streams: tuple[StreamKey, ...] = ()
    access_log: ir.AccessLogIR | None = ir.DEFAULT_ACCESS_LOG


STREAM_PROTOCOLS = frozenset({"TCP", "UDP"})


def secret_name(namespace: str, name: str) -> str:
    """The SDS name of a Kubernetes TLS Secret: stable across rotations, unique within a member cluster."""
    return f"secret/{namespace}/{name}"


def trusted_ca_name(gateway: GatewayKey, scope: str) -> str:
    """The SDS name of a Gateway's frontend CA bundle (``scope``: ``default`` or a perPort entry's port)."""
    return f"client-ca/{gateway[0]}/{gateway[1]}/{scope}"


def access_log(parameters: EnvoyProxySpec | None) -> ir.AccessLogIR | None:
    """The access log a Gateway's parameters ask for (None: off); what they leave out keeps the default."""
    settings = parameters.access_log if parameters is not None else None
    if settings is None:
        return ir.DEFAULT_ACCESS_LOG
    if settings.enabled is False:
        return None
    default = ir.DEFAULT_ACCESS_LOG
    sampled = default.sampled_per_million if settings.sampling is None \
        else round(settings.sampling * ir.PER_MILLION / 100)
    log = ir.AccessLogIR(settings.format or default.format, sampled)
    return default if log == default else log


def _tls_chain(listener: ListenerResult, used: dict[tuple[str, str], None], route_table: str) -> ir.TlsChainIR:
    for key in listener.certificate_secrets:
        used[key] = None
    hostname = listener.listener.hostname
    return ir.TlsChainIR((hostname,) if hostname else (),
                         tuple(dict.fromkeys(secret_name(*key) for key in listener.certificate_secrets)), route_table)


def _secret(key: tuple[str, str], secret: Secret) -> ir.SecretIR:
    data = secret.data
    return ir.SecretIR(secret_name(*key), base64.b64decode(data["tls.crt"]).decode(),
                       base64.b64decode(data["tls.key"]).decode())


def gateway_shape(key: GatewayKey, result: GatewayResult, secrets: Mapping[tuple[str, str], Secret],
                  bind_addresses: Mapping[tuple[str, str], str] | None) -> GatewayShape:
    """Ports of the usable listeners (the first one on a port decides its protocol); none at all is a
    shape too, so the Gateway's Envoys still get a (listener-less) configuration and turn ready."""
    protocols: dict[int, str] = {}
    chains: dict[int, list[ir.TlsChainIR]] = {}
    hostnames: dict[int, list[str | None]] = {}
    used: dict[tuple[str, str], None] = {}
    validations: dict[int, ir.ClientValidationIR] = {}
    cas: dict[str, ir.TrustedCaIR] = {}
    usable = [listener for listener in result.listeners if listener.usable]
    https_per_port = Counter(listener.listener.port for listener in usable if listener.listener.protocol == "HTTPS")
    ns, name = key
    streams = sorted({(listener.listener.protocol, listener.listener.port) for listener in usable
                      if listener.listener.protocol in STREAM_PROTOCOLS})
    for listener in usable:
        port = listener.listener.port
        if listener.listener.protocol in STREAM_PROTOCOLS:
            continue
        protocols.setdefault(port, listener.listener.protocol)
        chains.setdefault(port, [])
        hostnames.setdefault(port, []).append(listener.listener.hostname)
        if listener.listener.protocol == "HTTPS":
            # HTTPS listeners sharing a port get a route table each, so each can answer 421 for the others.
            table = f"{ns}/{name}/{port}/{listener.name}" if https_per_port[port] > 1 else ""
            chains[port].append(_tls_chain(listener, used, table))
            # One per port: every HTTPS listener of a port is targeted by the same frontend configuration.
            if (validation := listener.client_validation) is not None and port not in validations:
                ca_name = trusted_ca_name(key, validation.scope)
                validations[port] = ir.ClientValidationIR(ca_name, validation.mode == "AllowInsecureFallback")
                cas[ca_name] = ir.TrustedCaIR(ca_name, validation.ca_certificates)
        elif listener.listener.protocol == "TLS":
            chains[port].append(_tls_chain(listener, used, ""))
    ports = tuple(PortShape(port, protocols[port], tuple(chains[port]),  # type: ignore[arg-type]
                            tuple(sorted({h for h in hostnames[port] if h}))
                            if len(hostnames[port]) > 1 and protocols[port] != "TLS" else (),
                            validations.get(port))
                  for port in sorted(protocols))
    if result.client_certificate is not None:
        used[result.client_certificate] = None
    return GatewayShape(key, (bind_addresses or {}).get(key, "0.0.0.0"), ports,
                        tuple(sorted((_secret(used_key, secrets[used_key]) for used_key in used),
                                     key=lambda secret: secret.name)),
                        tuple(cas[name] for name in sorted(cas)),
                        secret_name(*result.client_certificate) if result.client_certificate is not None else None,
                        tuple(streams), access_log(result.parameters))  # type: ignore[arg-type]


def gateway_ir(cluster: str, shape: GatewayShape, virtual_hosts: Mapping[int, tuple[ir.VirtualHostIR, ...]],
               streams: Mapping[StreamKey, tuple[ir.RouteIR, ...]] | None = None) -> ir.GatewayIR:
    """A Gateway's IR: one HTTP listener per port, with the virtual hosts bound there (by port), and an
    empty one for each listener hostname of a shared port that has none; one TCP or UDP listener per such
    port, with the backends of the first (oldest) route of those bound there (``streams``, by protocol and
    port; none bound: no backends); and the certificates they name."""
    ns, name = shape.key
    listeners = []
    passthrough: list[ir.TLSPassthroughListenerIR] = []
    terminate: list[ir.TLSTerminateListenerIR] = []
    for p in shape.ports:
        port_name = f"{ns}/{name}/{p.port}"
        if p.protocol == "TLS":
            through, terminated = _tls_routes(p.tls, virtual_hosts.get(p.port, ()))
            if through:
                passthrough.append(ir.TLSPassthroughListenerIR(f"{port_name}/passthrough", p.port, through))
            certificates = tuple(dict.fromkeys(name for chain in p.tls for name in chain.certificates))
            if certificates:
                terminate.append(ir.TLSTerminateListenerIR(f"{port_name}/terminate", p.port, certificates, terminated))
            continue
        vhosts = _with_listener_hostnames(port_name, virtual_hosts.get(p.port, ()), p.listener_hostnames)
        listeners.append(ir.HTTPListenerIR(port_name, p.port, p.protocol, vhosts,
                                           p.tls, client_validation=p.client_validation,
                                           route_tables=_route_tables(p.tls, vhosts)))
    tcp, udp = [], []
    for protocol, port in shape.streams:
        routes = (streams or {}).get((protocol, port), ())
        backends = routes[0].backends if routes else ()
        if protocol == "TCP":
            tcp.append(ir.TCPListenerIR(f"{ns}/{name}/{port}", port, backends))
        else:
            udp.append(ir.UDPListenerIR(f"{ns}/{name}/{port}/udp", port, backends))
    return ir.GatewayIR(cluster, ns, name, shape.address, tuple(listeners), tuple(passthrough), tcp=tuple(tcp),
                        udp=tuple(udp), secrets=shape.secrets, trusted_cas=shape.trusted_cas,
                        client_certificate=shape.client_certificate, tls_terminate=tuple(terminate),
                        access_log=shape.access_log)


def _tls_routes(chains: tuple[ir.TlsChainIR, ...], vhosts: tuple[ir.VirtualHostIR, ...],
                ) -> tuple[tuple[ir.TLSRouteIR, ...], tuple[ir.TLSTerminateRouteIR, ...]]:
    """A TLS port's routes by mode: each SNI name (a virtual host's hostname; ``*`` is any) goes to the first
    route bound there (the oldest), through the listener that is the most specific for it (attachment left
    no other); names one route wins through one listener make one filter chain."""
    listener_hostnames = [chain.server_names[0] if chain.server_names else None for chain in chains]
    groups: dict[tuple[str, int, bool], tuple[list[str], ir.RouteIR]] = {}
    for vhost in vhosts:
        index = owner(vhost.hostname, listener_hostnames) if vhost.routes else None
        if index is None:
            continue
        winner = vhost.routes[0]
        any_name = vhost.hostname == "*"
        names, _ = groups.setdefault((winner.name, index, any_name), ([], winner))
        if not any_name:
            names.append(vhost.hostname)
    through: list[ir.TLSRouteIR] = []
    terminated: list[ir.TLSTerminateRouteIR] = []
    taken: dict[str, int] = {}
    for (route_name, index, _), (names, winner) in groups.items():
        seen = taken[route_name] = taken.get(route_name, 0) + 1
        unique = route_name if seen == 1 else f"{route_name}/{seen - 1}"
        certificates = chains[index].certificates
        if certificates:
            terminated.append(ir.TLSTerminateRouteIR(unique, tuple(names), certificates, winner.backends))
        else:
            through.append(ir.TLSRouteIR(unique, tuple(names), winner.backends))
    return tuple(through), tuple(terminated)


def _route_tables(chains: tuple[ir.TlsChainIR, ...],
                  vhosts: tuple[ir.VirtualHostIR, ...]) -> tuple[ir.RouteTableIR, ...]:
    """Where HTTPS listeners share a port, each one's route table: the virtual hosts whose hostname it is the
    most specific listener for (attachment already left any other out), and a 421 for every other listener's
    hostname. A request matches the most specific domain of its table, so a Host that another listener serves
    more specifically, or that this listener does not serve while another does, gets 421; one no listener
    serves, 404."""
    if not any(chain.route_table for chain in chains):
        return ()
    listener_hostnames = [chain.server_names[0] if chain.server_names else None for chain in chains]
    served: list[list[str]] = [[] for _ in chains]
    for vhost in vhosts:
        index = owner(vhost.hostname, listener_hostnames)
        if index is not None:
            served[index].append(vhost.hostname)
    return tuple(ir.RouteTableIR(chain.route_table, tuple(own), tuple(
        other or "*" for j, other in enumerate(listener_hostnames) if j != i and (other or "*") not in own))
        for i, (chain, own) in enumerate(zip(chains, served, strict=True)))


def _with_listener_hostnames(port_name: str, vhosts: tuple[ir.VirtualHostIR, ...],
                             listener_hostnames: tuple[str, ...]) -> tuple[ir.VirtualHostIR, ...]:
    present = {vhost.hostname for vhost in vhosts}
    missing = [h for h in listener_hostnames if h not in present]
    if not missing:
        return vhosts
    empty = [ir.VirtualHostIR(f"{port_name}/{h}", h, ()) for h in missing]
    return tuple(sorted((*vhosts, *empty), key=lambda vhost: vhost.hostname))
