"""GatewayClass and Gateway semantics: which listeners are valid, conflicted or resolved, and why.

Pure: typed objects of one member cluster in, status data out. Listeners that are not distinct (one
port with two protocols, or one port, protocol and hostname twice) are all Conflicted and none is
accepted: the spec forbids picking a winner. The distinct listeners left keep the Gateway working.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mcgw.objects.model import (
    CORE_GROUP,
    GATEWAY_GROUP,
    EnvoyProxySpec,
    Gateway,
    GatewayClass,
    LabelSelector,
    Listener,
    ReferenceGrant,
    Secret,
)
from mcgw.semantics.gateway import CONTROLLER_NAME
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.dataplane import Dataplane, dataplane_outcome
from mcgw.semantics.gateway.frontend import ClientValidation, FrontendResolution, resolve_frontend
from mcgw.semantics.gateway.hostnames import listener_hostnames_overlap
from mcgw.semantics.gateway.limits import MAX_LISTENERS, hostname_problem, is_ip, port_problem, section_name_problem
from mcgw.semantics.gateway.parameters import Proxies, class_parameters, gateway_parameters, service_type
from mcgw.semantics.gateway.refs import Reference, is_permitted
from mcgw.semantics.gateway.routekinds import kinds_for_protocol

SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "UDP")
# Protocols that route no hostname: two such listeners on one port are indistinct whatever their hostnames,
# and their hostnames take none from another listener of the port.
HOSTLESS_PROTOCOLS = frozenset({"TCP", "UDP"})


@dataclass(frozen=True)
class ListenerResult:
    """A listener's computed status. ``attached_routes`` is counted after route attachment, into a copy:
    results are shared between translations, so they are never changed once built."""

    listener: Listener
    supported_kinds: list[tuple[str, str]]
    conditions: list[c.Condition]
    certificate_secrets: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name)
    client_validation: ClientValidation | None = None  # what client certificates are verified against
    attached_routes: int = 0
    selector_valid: bool = True  # False: from Selector without a valid selector, so no namespace is admitted

    @property
    def name(self) -> str:
        return self.listener.name

    @property
    def usable(self) -> bool:
        """Accepted, not conflicted and with resolved references: it may carry traffic."""
        return any(cond.type == c.PROGRAMMED and cond.status == "True" for cond in self.conditions)


@dataclass(frozen=True)
class GatewayResult:
    gateway: Gateway
    conditions: list[c.Condition]
    listeners: list[ListenerResult]
    addresses: list[str] = field(default_factory=list)
    # The Gateway's parameters (its class's EnvoyProxy, its own on top); None: mcgw's defaults.
    parameters: EnvoyProxySpec | None = None
    parameters_valid: bool = True  # False: its own or its class's parameters cannot be used
    # (namespace, name) of the Secret presented to backends reached over TLS (spec.tls.backend); None: none.
    client_certificate: tuple[str, str] | None = None

    def with_attached(self, counts: Mapping[str, int]) -> GatewayResult:
        """A copy whose listeners carry ``attachedRoutes`` from ``counts`` (listener name -> routes)."""
        return replace(self, listeners=[replace(listener, attached_routes=counts.get(listener.name, 0))
                                        for listener in self.listeners])


def class_status(gateway_class: GatewayClass, proxies: Proxies | None = None) -> list[c.Condition] | None:
    """Our GatewayClass is Accepted unless its parameters cannot be used; another controller's gets nothing
    from us (``None``)."""
    if gateway_class.spec.controller_name != CONTROLLER_NAME:
        return None
    generation = gateway_class.metadata.generation
    _, problem = class_parameters(gateway_class, proxies or {})
    if problem:
        return [c.Condition(c.ACCEPTED, "False", c.REASON_INVALID_PARAMETERS, problem, generation)]
    return [c.Condition(c.ACCEPTED, "True", c.REASON_ACCEPTED, f"handled by {CONTROLLER_NAME}", generation)]


def _certificate_problems(gateway: Gateway, listener: Listener, secrets: Mapping[tuple[str, str], Secret],
                          grants: Iterable[ReferenceGrant]) -> tuple[str, str] | None:
    """(reason, message) for the first unusable certificate reference, or None if all resolve."""
    assert listener.tls is not None
    for ref in listener.tls.certificate_refs:
        namespace = ref.namespace or gateway.metadata.namespace
        where = f"{namespace}/{ref.name}"
        if (ref.group, ref.kind) != (CORE_GROUP, "Secret"):
            return c.REASON_INVALID_CERTIFICATE_REF, f"certificateRef {where} is a {ref.group}/{ref.kind}; only core " \
                                                     "Secrets are supported"
        reference = Reference(GATEWAY_GROUP, "Gateway", gateway.metadata.namespace, CORE_GROUP, "Secret", namespace,
                              ref.name)
        if not is_permitted(reference, grants):
            return c.REASON_REF_NOT_PERMITTED, f"certificateRef {where} is in another namespace and no " \
                                               f"ReferenceGrant in {namespace} allows Gateways from " \
                                               f"{gateway.metadata.namespace}"
        secret = secrets.get((namespace, ref.name))
        if secret is None:
            return c.REASON_INVALID_CERTIFICATE_REF, f"Secret {where} does not exist"
        if secret.type != "kubernetes.io/tls" or not {"tls.crt", "tls.key"} <= set(secret.data):
            return c.REASON_INVALID_CERTIFICATE_REF, f"Secret {where} is not a kubernetes.io/tls Secret with " \
                                                     "tls.crt and tls.key"
        if problem := pem_problem(secret.data["tls.crt"], secret.data["tls.key"]):
            return c.REASON_INVALID_CERTIFICATE_REF, f"Secret {where}: {problem}"
    return None


def pem_problem(certificate_b64: str, key_b64: str) -> str | None:
    """Why Envoy would refuse this certificate chain and key (base64 as stored in a Secret), or None."""
    try:
        chain = x509.load_pem_x509_certificates(base64.b64decode(certificate_b64, validate=True))
    except (ValueError, binascii.Error) as error:
        return f"tls.crt is not a PEM certificate chain ({error})"
    try:
        key = serialization.load_pem_private_key(base64.b64decode(key_b64, validate=True), password=None)
    except (ValueError, TypeError, binascii.Error) as error:
        return f"tls.key is not an unencrypted PEM private key ({error})"
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        return "tls.key does not match the first certificate in tls.crt"
    return None


def _conflicts(listeners: tuple[Listener, ...]) -> dict[str, tuple[str, str]]:
    """Listener name → (reason, message) for every listener that is not distinct. All of them, not the
    later ones only: the spec forbids choosing a winner among indistinct listeners."""
    # A UDP listener shares its port number with a TCP-family one (HTTP, HTTPS, TCP): they are other sockets.
    by_port: dict[tuple[int, bool], list[Listener]] = {}
    for listener in listeners:
        by_port.setdefault((listener.port, listener.protocol == "UDP"), []).append(listener)
    conflicts: dict[str, tuple[str, str]] = {}
    for (port, _), group in by_port.items():
        if len({listener.protocol for listener in group}) > 1:
            for listener in group:
                others = ", ".join(f"{other.name} ({other.protocol})" for other in group
                                   if other.protocol != listener.protocol)
                conflicts[listener.name] = (c.REASON_PROTOCOL_CONFLICT,
                                            f"port {port} is {listener.protocol} here but also used by {others}: "
                                            "give each protocol its own port")
            continue
        by_hostname: dict[str | None, list[Listener]] = {}
        for listener in group:
            hostname = None if listener.protocol in HOSTLESS_PROTOCOLS else listener.hostname
            by_hostname.setdefault(hostname, []).append(listener)
        for hostname, same in by_hostname.items():
            if len(same) < 2:
                continue
            for listener in same:
                names = [other.name for other in same if other is not listener]
                who = f"listener {names[0]} also serves" if len(names) == 1 else \
                    f"listeners {', '.join(names)} also serve"
                conflicts[listener.name] = (c.REASON_HOSTNAME_CONFLICT,
                                            f"{who} hostname {hostname or '(any)'} on "
                                            f"port {port}: give each listener a distinct hostname or port")
    return conflicts


def _overlapping_tls(listeners: tuple[Listener, ...], conflicts: Mapping[str, object]) -> dict[str, list[str]]:
    """HTTPS listener name → the other HTTPS listeners on its port whose hostnames overlap with its own.
    Every side of an overlap is reported, as the spec requires; conflicted listeners are left out, since
    they are not served at all."""
    https = [listener for listener in listeners if listener.protocol == "HTTPS" and listener.name not in conflicts]
    overlaps: dict[str, list[str]] = {}
    for listener in https:
        for other in https:
            if other is not listener and other.port == listener.port \
                    and listener_hostnames_overlap(listener.hostname, other.hostname):
                overlaps.setdefault(listener.name, []).append(other.name)
    return overlaps


_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"label key {key!r} has a prefix that is not a DNS subdomain"
    if not _LABEL_NAME.fullmatch(name):
        return f"label key {key!r} is not a valid label name (at most 63 alphanumerics, '-', '_' or '.')"
    return None


def _label_value_problem(value: str) -> str | None:
    if value and not _LABEL_NAME.fullmatch(value):
        return f"label value {value!r} is not valid (at most 63 alphanumerics, '-', '_' or '.', or empty)"
    return None


def selector_problem(selector: LabelSelector) -> str | None:
    """Why Kubernetes would refuse this label selector, or None: an invalid selector selects nothing,
    rather than the looser selector it might be read as."""
    for key, value in selector.match_labels.items():
        if problem := _label_key_problem(key) or _label_value_problem(value):
            return f"matchLabels: {problem}"
    for i, requirement in enumerate(selector.match_expressions):
        where = f"matchExpressions[{i}] (key {requirement.key!r}, operator {requirement.operator})"
        if problem := _label_key_problem(requirement.key):
            return f"{where}: {problem}"
        if requirement.operator in ("In", "NotIn"):
            if not requirement.values:
                return f"{where}: {requirement.operator} needs at least one value; add values"
        elif requirement.operator in ("Exists", "DoesNotExist"):
            if requirement.values:
                return f"{where}: {requirement.operator} takes no values; remove them"
        else:
            return f"{where}: the operator must be In, NotIn, Exists or DoesNotExist"
        for value in requirement.values:
            if problem := _label_value_problem(value):
                return f"{where}: {problem}"
    return None


def _namespaces_problem(listener: Listener) -> str | None:
    """Why ``allowedRoutes.namespaces`` cannot be applied, or None."""
    policy = listener.allowed_routes.namespaces
    if policy.from_ != "Selector":
        return None
    if policy.selector is None:
        return ("allowedRoutes.namespaces.from is Selector but no selector is set: add "
                "allowedRoutes.namespaces.selector, or use from Same or All")
    if problem := selector_problem(policy.selector):
        return f"allowedRoutes.namespaces.selector is not a valid label selector: {problem}"
    return None


def listener_value_problem(listener: Listener) -> str | None:
    """Why a listener's name, port or hostname is outside the CRD's limits (Envoy would refuse the port)."""
    return (section_name_problem(listener.name) or port_problem(listener.port, "port")
            or (hostname_problem(listener.hostname) if listener.hostname is not None else None))


def _listener_result(gateway: Gateway, listener: Listener, conflict: tuple[str, str] | None, overlaps: list[str],
                     secrets: Mapping[tuple[str, str], Secret], grants: Iterable[ReferenceGrant],
                     frontend: FrontendResolution) -> ListenerResult:
    generation = gateway.metadata.generation

    def cond(kind: str, status: c.Status, reason: str, message: str) -> c.Condition:
        return c.Condition(kind, status, reason, message, generation)

    accepted = cond(c.ACCEPTED, "True", c.REASON_ACCEPTED, "listener is valid")
    resolved = cond(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS, "all references resolved")
    supported: list[tuple[str, str]] = []
    certificates: list[tuple[str, str]] = []
    validation: ClientValidation | None = None
    served_unresolved = False  # ResolvedRefs=False, but what did resolve is served
    if value_problem := listener_value_problem(listener):
        reason = c.REASON_PORT_UNAVAILABLE if value_problem.startswith("port") else c.REASON_UNSUPPORTED_VALUE
        accepted = cond(c.ACCEPTED, "False", reason, value_problem)
    elif listener.protocol not in SUPPORTED_PROTOCOLS:
        accepted = cond(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_PROTOCOL,
                        f"protocol {listener.protocol} is not supported; use {' or '.join(SUPPORTED_PROTOCOLS)}")
    else:
        accepted_kinds = kinds_for_protocol(listener.protocol)
        requested = [(k.group, k.kind) for k in listener.allowed_routes.kinds] or accepted_kinds
        supported = [k for k in requested if k in accepted_kinds]
        if unsupported := [f"{g}/{k}" for g, k in requested if (g, k) not in accepted_kinds]:
            resolved = cond(c.RESOLVED_REFS, "False", c.REASON_INVALID_ROUTE_KINDS,
                            f"route kinds {', '.join(unsupported)} are not supported on {listener.protocol}")
        if listener.protocol == "TLS":
            if listener.tls is None:
                accepted = cond(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE,
                                "a TLS listener needs tls.mode: Passthrough, or Terminate with tls.certificateRefs")
            elif listener.tls.mode == "Passthrough":
                pass  # the backends present their own certificates
            elif not listener.tls.certificate_refs:
                accepted = cond(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE,
                                "a TLS listener with tls.mode Terminate needs tls.certificateRefs")
            elif problem := _certificate_problems(gateway, listener, secrets, grants):
                resolved = cond(c.RESOLVED_REFS, "False", *problem)
            else:
                certificates = [(r.namespace or gateway.metadata.namespace, r.name)
                                for r in listener.tls.certificate_refs]
        elif listener.protocol == "HTTPS":
            if listener.tls is None or not listener.tls.certificate_refs:
                accepted = cond(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE,
                                "an HTTPS listener needs tls.certificateRefs")
            elif listener.tls.mode != "Terminate":
                accepted = cond(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE,
                                f"tls.mode {listener.tls.mode} is not supported on HTTPS; use Terminate")
            elif problem := _certificate_problems(gateway, listener, secrets, grants):
                resolved = cond(c.RESOLVED_REFS, "False", *problem)
            else:
                certificates = [(r.namespace or gateway.metadata.namespace, r.name)
                                for r in listener.tls.certificate_refs]
                if (outcome := frontend.for_listener(listener.port, listener.protocol)) is not None:
                    validation = outcome.validation
                    if outcome.problem is not None:
                        served_unresolved = validation is not None
                        rest = "; client certificates are verified against the valid ones" if served_unresolved else ""
                        resolved = cond(c.RESOLVED_REFS, "False", outcome.problem[0], outcome.problem[1] + rest)
                    if validation is None:
                        assert outcome.problem is not None
                        accepted = cond(c.ACCEPTED, "False", c.REASON_NO_VALID_CA_CERTIFICATE,
                                        f"no valid CA certificate to verify client certificates with: "
                                        f"{outcome.problem[1]}")
    namespaces_problem = _namespaces_problem(listener)
    if namespaces_problem and accepted.status == "True":
        accepted = cond(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE, namespaces_problem)
    if conflict and accepted.status == "True":
        # The spec: no indistinct listener is accepted for processing.
        accepted = cond(c.ACCEPTED, "False", conflict[0], f"conflicted, so not accepted: {conflict[1]}")
    conflicted = (cond(c.CONFLICTED, "True", *conflict) if conflict
                  else cond(c.CONFLICTED, "False", c.REASON_NO_CONFLICTS, "no conflicts"))
    if accepted.status == "False" or conflict or (resolved.status == "False" and not supported):
        programmed = cond(c.PROGRAMMED, "False", c.REASON_INVALID, "listener is not valid: see its conditions")
    elif resolved.status == "False" and resolved.reason != c.REASON_INVALID_ROUTE_KINDS and not served_unresolved:
        programmed = cond(c.PROGRAMMED, "False", c.REASON_INVALID, f"references not resolved: {resolved.message}")
    else:
        programmed = cond(c.PROGRAMMED, "True", c.REASON_PROGRAMMED, "listener is programmed")
    conditions = [accepted, programmed, resolved, conflicted]
    if overlaps:
        # A warning (negative polarity, so only ever written True): the listener is still served.
        conditions.append(cond(c.OVERLAPPING_TLS_CONFIG, "True", c.REASON_OVERLAPPING_HOSTNAMES,
                               f"hostname {listener.hostname or '(any)'} overlaps with HTTPS "
                               f"{'listener' if len(overlaps) == 1 else 'listeners'} {', '.join(overlaps)} "
                               f"on port {listener.port}: a client may reuse one "
                               "listener's TLS connection for the other's hostnames; give them hostnames "
                               "that do not overlap, or separate ports"))
    return ListenerResult(listener, supported, conditions, certificates, validation,
                          selector_valid=namespaces_problem is None)


def gateway_status(gateway: Gateway, classes: Mapping[str, GatewayClass], secrets: Mapping[tuple[str, str], Secret],
                   grants: Iterable[ReferenceGrant], addresses: Iterable[str] = (),
                   proxies: Proxies | None = None, dataplane: Dataplane | None = None,
                   config_maps: Mapping[tuple[str, str], object] | None = None) -> GatewayResult | None:
    """The Gateway's conditions and per-listener results; ``None`` if another controller owns its class.
    ``config_maps`` (by namespace and name) hold the CA bundles of its frontend validation.

    With ``dataplane`` (provisioned Envoys), the addresses and Programmed come from what was observed of
    them (``semantics.gateway.dataplane``); without, from ``addresses``."""
    gateway_class = classes.get(gateway.spec.gateway_class_name)
    if gateway_class is None or gateway_class.spec.controller_name != CONTROLLER_NAME:
        return None
    class_spec, class_problem = class_parameters(gateway_class, proxies or {})
    if class_problem:
        generation = gateway.metadata.generation
        reason = f"GatewayClass {gateway_class.metadata.name} is not accepted: {class_problem}"
        return GatewayResult(gateway, [c.Condition(c.ACCEPTED, "False", c.REASON_INVALID, reason, generation),
                                       c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID, reason, generation)], [],
                             parameters_valid=False)
    parameters, parameters_problem = gateway_parameters(gateway, class_spec, proxies or {})
    if len(gateway.spec.listeners) > MAX_LISTENERS:
        generation = gateway.metadata.generation
        reason = (f"the Gateway has {len(gateway.spec.listeners)} listeners; the Gateway API allows at most "
                  f"{MAX_LISTENERS}: split them across Gateways")
        return GatewayResult(gateway, [c.Condition(c.ACCEPTED, "False", c.REASON_INVALID, reason, generation),
                                       c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID, reason, generation)], [],
                             parameters=parameters, parameters_valid=parameters_problem is None)
    grants = list(grants)
    # A listener that is invalid or of a protocol mcgw does not serve claims no port or hostname, so it
    # cannot make a valid one Conflicted.
    reserved = dataplane.reserved_ports if dataplane is not None else frozenset()
    claiming = tuple(listener for listener in gateway.spec.listeners
                     if not listener_value_problem(listener) and listener.protocol in SUPPORTED_PROTOCOLS
                     and listener.port not in reserved)
    conflicts = _conflicts(claiming)
    overlaps = _overlapping_tls(claiming, conflicts)
    frontend = resolve_frontend(gateway, config_maps or {}, secrets, grants)
    listeners = [_listener_result(gateway, listener, conflicts.get(listener.name), overlaps.get(listener.name, []),
                                  secrets, grants, frontend)
                 for listener in gateway.spec.listeners]
    if reserved:
        listeners = [_reserved(result) if result.listener.port in reserved else result for result in listeners]
    generation = gateway.metadata.generation
    if parameters_problem:
        return _not_accepted(gateway, listeners, c.REASON_INVALID_PARAMETERS, parameters_problem)
    unsupported = [address for address in gateway.spec.addresses if address.type != "IPAddress"]
    if unsupported:
        message = ("spec.addresses: " + "; ".join(f"type {address.type} ({address.value!r}) is not supported"
                                                  for address in unsupported)
                   + ": mcgw serves only IPAddress addresses; use one, or remove the entry")
        return _not_accepted(gateway, listeners, c.REASON_UNSUPPORTED_ADDRESS, message, parameters)
    usable = [result for result in listeners if result.usable]
    invalid = [result.name for result in listeners if not result.usable]
    if not invalid:
        accepted = c.Condition(c.ACCEPTED, "True", c.REASON_ACCEPTED, "all listeners are valid", generation)
    else:
        message = f"listeners not valid: {', '.join(invalid)}"
        if conflicted := [result.name for result in listeners if result.name in conflicts]:
            message += (f"; conflicted, so none of them is accepted: {', '.join(conflicted)}"
                        f"; programmed: {', '.join(result.name for result in usable) or 'none'}")
        if usable:
            accepted = c.Condition(c.ACCEPTED, "True", c.REASON_LISTENERS_NOT_VALID, message, generation)
        else:
            accepted = c.Condition(c.ACCEPTED, "False", c.REASON_LISTENERS_NOT_VALID,
                                   "no listener is valid" + (f" ({message})" if conflicted else ""), generation)
    unusable = [address for address in gateway.spec.addresses if not is_ip(address.value)]
    refused = {address.value for address in unusable}
    unassigned, pending = "no address has been assigned to this Gateway yet", ""
    not_usable: list[tuple[str, str]] = []
    if dataplane is not None:
        outcome = dataplane_outcome(gateway, service_type(parameters), dataplane)
        addresses = outcome.addresses
        not_usable, unassigned, pending = list(outcome.unusable), outcome.unassigned or unassigned, outcome.pending
    assigned = [address for address in addresses if address not in refused]
    if not usable:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID, "no listener can be programmed", generation)
    elif unusable:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_ADDRESS_NOT_USABLE,
                                 "spec.addresses: " + "; ".join(f"{address.value!r} is not an IP address"
                                                               for address in unusable)
                                 + ": give a valid IPv4 or IPv6 address, or remove the entry", generation)
    elif not_usable:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_ADDRESS_NOT_USABLE,
                                 "spec.addresses: " + "; ".join(f"{value}: {why}" for value, why in not_usable),
                                 generation)
    elif not assigned:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_ADDRESS_NOT_ASSIGNED, unassigned, generation)
    elif pending:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_PENDING, pending, generation)
    else:
        programmed = c.Condition(c.PROGRAMMED, "True", c.REASON_PROGRAMMED,
                                 f"programmed at {', '.join(assigned)}", generation)
    conditions = [accepted, programmed]
    if frontend.insecure:
        conditions.append(c.Condition(c.INSECURE_FRONTEND_VALIDATION_MODE, "True", c.REASON_CONFIGURATION_CHANGED,
                                      "spec.tls.frontend asks for AllowInsecureFallback: HTTPS listeners it targets "
                                      "accept clients without a valid certificate", generation))
    return GatewayResult(gateway, conditions, listeners, assigned, parameters)


def _reserved(result: ListenerResult) -> ListenerResult:
    """A listener on a port the provisioned Envoy itself uses (its readiness listener, its admin interface):
    Envoy could not bind it."""
    generation = result.conditions[0].observed_generation
    port = result.listener.port
    replaced = {c.ACCEPTED: c.Condition(c.ACCEPTED, "False", c.REASON_PORT_UNAVAILABLE,
                                        f"port {port} is used by the provisioned Envoy itself (readiness and admin): "
                                        "use another port", generation),
                c.PROGRAMMED: c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID,
                                          "listener is not valid: see its conditions", generation)}
    return replace(result, conditions=[replaced.get(condition.type, condition) for condition in result.conditions])


def _not_accepted(gateway: Gateway, listeners: list[ListenerResult], reason: str, message: str,
                  parameters: EnvoyProxySpec | None = None) -> GatewayResult:
    """A Gateway asking for an address type mcgw cannot serve, or with parameters it cannot use, is not
    accepted; none of its listeners is programmed, so it carries no traffic other than what it asked for."""
    generation = gateway.metadata.generation
    not_programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID,
                                 f"the Gateway is not accepted: {message}", generation)
    listeners = [replace(result, conditions=[not_programmed if condition.type == c.PROGRAMMED else condition
                                             for condition in result.conditions])
                 for result in listeners]
    return GatewayResult(gateway, [c.Condition(c.ACCEPTED, "False", reason, message, generation), not_programmed],
                         listeners, [], parameters, parameters_valid=reason != c.REASON_INVALID_PARAMETERS)
