"""GatewayClass and Gateway semantics: which listeners are valid, conflicted or resolved, and why.

Pure: typed objects of one member cluster in, status data out. When listeners conflict, the first
one declared keeps the port or hostname and the later ones are Conflicted, so the rest of the
Gateway keeps working.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mcgw.objects.model import CORE_GROUP, GATEWAY_GROUP, Gateway, GatewayClass, Listener, ReferenceGrant, Secret
from mcgw.semantics.gateway import CONTROLLER_NAME
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.limits import MAX_LISTENERS, hostname_problem, port_problem, section_name_problem
from mcgw.semantics.gateway.refs import Reference, is_permitted
from mcgw.semantics.gateway.routekinds import kinds_for_protocol

SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")


@dataclass(frozen=True)
class ListenerResult:
    """A listener's computed status. ``attached_routes`` is counted after route attachment, into a copy:
    results are shared between translations, so they are never changed once built."""

    listener: Listener
    supported_kinds: list[tuple[str, str]]
    conditions: list[c.Condition]
    certificate_secrets: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name)
    attached_routes: int = 0

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

    def with_attached(self, counts: Mapping[str, int]) -> GatewayResult:
        """A copy whose listeners carry ``attachedRoutes`` from ``counts`` (listener name -> routes)."""
        return replace(self, listeners=[replace(listener, attached_routes=counts.get(listener.name, 0))
                                        for listener in self.listeners])


def class_status(gateway_class: GatewayClass) -> list[c.Condition] | None:
    """Our GatewayClass is Accepted; another controller's gets nothing from us (``None``)."""
    if gateway_class.spec.controller_name != CONTROLLER_NAME:
        return None
    generation = gateway_class.metadata.generation
    if gateway_class.spec.parameters_ref is not None:
        ref = gateway_class.spec.parameters_ref
        return [c.Condition(c.ACCEPTED, "False", c.REASON_INVALID_PARAMETERS,
                            f"{CONTROLLER_NAME} takes no parameters; remove spec.parametersRef "
                            f"({ref.group}/{ref.kind} {ref.name})", generation)]
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
    """Listener name → (reason, message) for listeners that lose a port or hostname to an earlier one."""
    conflicts: dict[str, tuple[str, str]] = {}
    first_protocol: dict[int, Listener] = {}
    seen_hostnames: dict[tuple[int, str | None], Listener] = {}
    for listener in listeners:
        owner = first_protocol.setdefault(listener.port, listener)
        if owner.protocol != listener.protocol:
            conflicts[listener.name] = (c.REASON_PROTOCOL_CONFLICT,
                                        f"port {listener.port} is already {owner.protocol} on listener {owner.name}")
            continue
        earlier = seen_hostnames.setdefault((listener.port, listener.hostname), listener)
        if earlier is not listener:
            conflicts[listener.name] = (c.REASON_HOSTNAME_CONFLICT,
                                        f"listener {earlier.name} already serves hostname "
                                        f"{listener.hostname or '(any)'} on port {listener.port}")
    return conflicts


def listener_value_problem(listener: Listener) -> str | None:
    """Why a listener's name, port or hostname is outside the CRD's limits (Envoy would refuse the port)."""
    return (section_name_problem(listener.name) or port_problem(listener.port, "port")
            or (hostname_problem(listener.hostname) if listener.hostname is not None else None))


def _listener_result(gateway: Gateway, listener: Listener, conflict: tuple[str, str] | None,
                     secrets: Mapping[tuple[str, str], Secret], grants: Iterable[ReferenceGrant]) -> ListenerResult:
    generation = gateway.metadata.generation

    def cond(kind: str, status: c.Status, reason: str, message: str) -> c.Condition:
        return c.Condition(kind, status, reason, message, generation)

    accepted = cond(c.ACCEPTED, "True", c.REASON_ACCEPTED, "listener is valid")
    resolved = cond(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS, "all references resolved")
    supported: list[tuple[str, str]] = []
    certificates: list[tuple[str, str]] = []
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
        if listener.protocol == "HTTPS":
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
    conflicted = (cond(c.CONFLICTED, "True", *conflict) if conflict
                  else cond(c.CONFLICTED, "False", c.REASON_NO_CONFLICTS, "no conflicts"))
    if accepted.status == "False" or conflict or (resolved.status == "False" and not supported):
        programmed = cond(c.PROGRAMMED, "False", c.REASON_INVALID, "listener is not valid: see its conditions")
    elif resolved.status == "False" and resolved.reason != c.REASON_INVALID_ROUTE_KINDS:
        programmed = cond(c.PROGRAMMED, "False", c.REASON_INVALID, f"references not resolved: {resolved.message}")
    else:
        programmed = cond(c.PROGRAMMED, "True", c.REASON_PROGRAMMED, "listener is programmed")
    return ListenerResult(listener, supported, [accepted, programmed, resolved, conflicted], certificates)


def gateway_status(gateway: Gateway, classes: Mapping[str, GatewayClass], secrets: Mapping[tuple[str, str], Secret],
                   grants: Iterable[ReferenceGrant], addresses: Iterable[str] = ()) -> GatewayResult | None:
    """The Gateway's conditions and per-listener results; ``None`` if another controller owns its class."""
    gateway_class = classes.get(gateway.spec.gateway_class_name)
    if gateway_class is None or gateway_class.spec.controller_name != CONTROLLER_NAME:
        return None
    class_conditions = class_status(gateway_class)
    if class_conditions and class_conditions[0].status != "True":
        generation = gateway.metadata.generation
        reason = f"GatewayClass {gateway_class.metadata.name} is not accepted: {class_conditions[0].message}"
        return GatewayResult(gateway, [c.Condition(c.ACCEPTED, "False", c.REASON_INVALID, reason, generation),
                                       c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID, reason, generation)], [])
    if len(gateway.spec.listeners) > MAX_LISTENERS:
        generation = gateway.metadata.generation
        reason = (f"the Gateway has {len(gateway.spec.listeners)} listeners; the Gateway API allows at most "
                  f"{MAX_LISTENERS}: split them across Gateways")
        return GatewayResult(gateway, [c.Condition(c.ACCEPTED, "False", c.REASON_INVALID, reason, generation),
                                       c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID, reason, generation)], [])
    grants = list(grants)
    # An invalid listener claims no port or hostname, so it cannot make a valid one Conflicted.
    conflicts = _conflicts(tuple(listener for listener in gateway.spec.listeners
                                 if not listener_value_problem(listener)))
    listeners = [_listener_result(gateway, listener, conflicts.get(listener.name), secrets, grants)
                 for listener in gateway.spec.listeners]
    generation = gateway.metadata.generation
    usable = [result for result in listeners if result.usable]
    invalid = [result.name for result in listeners if not result.usable]
    if not invalid:
        accepted = c.Condition(c.ACCEPTED, "True", c.REASON_ACCEPTED, "all listeners are valid", generation)
    elif usable:
        accepted = c.Condition(c.ACCEPTED, "True", c.REASON_LISTENERS_NOT_VALID,
                               f"listeners not valid: {', '.join(invalid)}", generation)
    else:
        accepted = c.Condition(c.ACCEPTED, "False", c.REASON_LISTENERS_NOT_VALID, "no listener is valid", generation)
    assigned = list(addresses)
    if not usable:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_INVALID, "no listener can be programmed", generation)
    elif not assigned:
        programmed = c.Condition(c.PROGRAMMED, "False", c.REASON_ADDRESS_NOT_ASSIGNED,
                                 "no address has been assigned to this Gateway yet", generation)
    else:
        programmed = c.Condition(c.PROGRAMMED, "True", c.REASON_PROGRAMMED,
                                 f"programmed at {', '.join(assigned)}", generation)
    return GatewayResult(gateway, [accepted, programmed], listeners, assigned)
