"""Frontend client-certificate validation (GEP-91, ``Gateway.spec.tls.frontend``): which CA bundle each HTTPS
listener verifies client certificates against, and whether a client may fall back to no valid certificate.

Decisions, and why:

- **Per port.** A ``perPort`` entry for a listener's port replaces ``default`` there (an entry without
  ``validation`` turns validation off on that port). The HTTPS listeners of one port share an Envoy listener
  and, with HTTP/2 coalescing, connections (GEP-3567), so trust configured per listener could be bypassed.
  Listeners that are not HTTPS are not targeted.
- **CA references** are core ConfigMaps with a ``ca.crt`` key, and core Secrets of type ``kubernetes.io/tls``
  with a ``ca.crt`` key (as cert-manager writes them). Other Secrets are never read: the informers list only
  TLS Secrets, which keeps application secrets and mcgw's own CA key out of its memory, so an Opaque Secret
  is reported as not found. Another namespace needs a ReferenceGrant there. Each bundle is parsed, and only
  its certificates are passed on (a key pasted into ``ca.crt`` never reaches Envoy), so Envoy never refuses it.
- **Invalid references** make ``ResolvedRefs=False`` on every listener they target, with the first problem;
  the listeners verify against the valid ones only (narrower trust, never wider). With none valid the
  listeners are ``Accepted=False NoValidCACertificate`` and not served, whatever the mode: an unusable
  configuration never silently turns validation off.
- **AllowInsecureFallback** lets clients through without a certificate, or with one no configured CA
  signed; the Gateway carries ``InsecureFrontendValidationMode=True`` while any of its configurations asks
  for it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from mcgw.objects.kinds import TLS_SECRET_TYPE
from mcgw.objects.model import (
    CA_CERTIFICATE_KEY,
    CORE_GROUP,
    GATEWAY_GROUP,
    CACertificateReference,
    ConfigMap,
    FrontendTLS,
    Gateway,
    ReferenceGrant,
    Secret,
)
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.refs import Reference, is_permitted
from mcgw.semantics.policy.backendtls import ca_problem, certificates_only

Mode = Literal["AllowValidOnly", "AllowInsecureFallback"]
INSECURE_FALLBACK: Mode = "AllowInsecureFallback"
DEFAULT_SCOPE = "default"


class ClientValidation(NamedTuple):
    """What the HTTPS listeners of a port verify client certificates against: the CA certificates (PEM) of
    one configuration, ``scope`` naming it (``default``, or the perPort entry's port)."""

    scope: str
    mode: Mode
    ca_certificates: str


class FrontendOutcome(NamedTuple):
    """One configuration resolved: ``validation`` is None when no reference is usable; ``problem`` is the
    first invalid reference's (ResolvedRefs reason, message)."""

    validation: ClientValidation | None
    problem: tuple[str, str] | None


class FrontendResolution(NamedTuple):
    default: FrontendOutcome | None  # None: no validation by default
    per_port: Mapping[int, FrontendOutcome | None]
    insecure: bool  # some configuration asks for AllowInsecureFallback

    def for_listener(self, port: int, protocol: str) -> FrontendOutcome | None:
        """The configuration that targets a listener, or None: it verifies no client certificate."""
        if protocol != "HTTPS":
            return None
        return self.per_port.get(port, self.default)


NO_FRONTEND_VALIDATION = FrontendResolution(None, {}, False)


def _pem(gateway: Gateway, ref: CACertificateReference, where: str, config_maps: Mapping[tuple[str, str], object],
         secrets: Mapping[tuple[str, str], Secret], grants: Iterable[ReferenceGrant]) -> str | tuple[str, str]:
    """The reference's CA certificates, or (reason, message) saying why it cannot be used."""
    own = gateway.metadata.namespace
    namespace = ref.namespace or own
    if ref.group != CORE_GROUP or ref.kind not in ("ConfigMap", "Secret"):
        return c.REASON_INVALID_CA_CERTIFICATE_KIND, (f"{where}: a {ref.group or 'core'}/{ref.kind} cannot hold CA "
                                                      "certificates; use a core ConfigMap (or a kubernetes.io/tls "
                                                      f"Secret) with a {CA_CERTIFICATE_KEY} key")
    if not is_permitted(Reference(GATEWAY_GROUP, "Gateway", own, CORE_GROUP, ref.kind, namespace, ref.name), grants):
        return c.REASON_REF_NOT_PERMITTED, (f"{where} is in another namespace and no ReferenceGrant in {namespace} "
                                            f"allows Gateways from {own} to refer to it")
    if ref.kind == "ConfigMap":
        found = config_maps.get((namespace, ref.name))
        if not isinstance(found, ConfigMap):
            return c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} does not exist"
        if found.ca_crt is None:
            return c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} has no {CA_CERTIFICATE_KEY} key"
        pem = found.ca_crt
    else:
        secret = secrets.get((namespace, ref.name))
        if secret is None or secret.type != TLS_SECRET_TYPE:
            return c.REASON_INVALID_CA_CERTIFICATE_REF, (f"{where} does not exist or is not of type {TLS_SECRET_TYPE}, "
                                                         "the only Secrets mcgw reads; or use a ConfigMap")
        encoded = secret.data.get(CA_CERTIFICATE_KEY)
        if encoded is None:
            return c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} has no {CA_CERTIFICATE_KEY} key"
        try:
            pem = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where}: {CA_CERTIFICATE_KEY} is not base64 PEM text"
    if problem := ca_problem(pem):
        return c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} {problem}"
    return certificates_only(pem)


def _outcome(gateway: Gateway, scope: str, label: str, tls: FrontendTLS,
             config_maps: Mapping[tuple[str, str], object], secrets: Mapping[tuple[str, str], Secret],
             grants: Iterable[ReferenceGrant]) -> FrontendOutcome | None:
    validation = tls.validation
    if validation is None:
        return None
    bundle: list[str] = []
    problem: tuple[str, str] | None = None
    for index, ref in enumerate(validation.ca_certificate_refs):
        where = (f"{label} caCertificateRefs[{index}] {ref.group or 'core'}/{ref.kind} "
                 f"{ref.namespace or gateway.metadata.namespace}/{ref.name}")
        found = _pem(gateway, ref, where, config_maps, secrets, grants)
        if isinstance(found, str):
            bundle.append(found)
        elif problem is None:
            problem = found
    if not bundle:
        return FrontendOutcome(None, problem)
    return FrontendOutcome(ClientValidation(scope, validation.mode, "".join(dict.fromkeys(bundle))), problem)


def resolve_frontend(gateway: Gateway, config_maps: Mapping[tuple[str, str], object],
                     secrets: Mapping[tuple[str, str], Secret],
                     grants: Iterable[ReferenceGrant]) -> FrontendResolution:
    """The Gateway's default and per-port client validation, each resolved against the cluster's objects."""
    frontend = gateway.spec.tls.frontend if gateway.spec.tls is not None else None
    if frontend is None:
        return NO_FRONTEND_VALIDATION
    grants = tuple(grants)
    configurations = [frontend.default, *(entry.tls for entry in frontend.per_port)]
    insecure = any(tls.validation is not None and tls.validation.mode == INSECURE_FALLBACK
                   for tls in configurations)
    per_port: dict[int, FrontendOutcome | None] = {}
    for entry in frontend.per_port:
        if entry.port not in per_port:  # the CRD keeps ports unique; without it, the first entry wins
            per_port[entry.port] = _outcome(gateway, str(entry.port), f"spec.tls.frontend.perPort[port {entry.port}]",
                                            entry.tls, config_maps, secrets, grants)
    default = _outcome(gateway, DEFAULT_SCOPE, "spec.tls.frontend.default", frontend.default, config_maps, secrets,
                       grants)
    return FrontendResolution(default, per_port, insecure)


def referenced(gateways: Iterable[Gateway]) -> frozenset[tuple[str, str, str]]:
    """(kind, namespace, name) of every object some Gateway's frontend validation names: a change to one of
    them re-evaluates the Gateways."""
    found: set[tuple[str, str, str]] = set()
    for gateway in gateways:
        frontend = gateway.spec.tls.frontend if gateway.spec.tls is not None else None
        if frontend is None:
            continue
        for tls in (frontend.default, *(entry.tls for entry in frontend.per_port)):
            if tls.validation is not None:
                found.update((ref.kind, ref.namespace or gateway.metadata.namespace, ref.name)
                             for ref in tls.validation.ca_certificate_refs)
    return frozenset(found)
