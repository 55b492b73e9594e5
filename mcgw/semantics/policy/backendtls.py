"""BackendTLSPolicy (Gateway API v1): which backend ports the Gateway reaches over TLS, and how it checks them.

A pure function of one member cluster's policies and ConfigMaps (:func:`resolve_backend_tls`); the route
status does not depend on it, only the backends' Envoy clusters and the policies' own conditions do.

Decisions, and why:

- **Targets** are core Services, optionally one port by its name (``sectionName``). A ServiceImport backend
  (namespace sameness: the Service of that namespace and name, exported from every cluster that exports it)
  uses the policy of the Gateway's cluster that targets the ServiceImport itself
  (``multicluster.x-k8s.io/ServiceImport``, implementation-specific) or, without one, the same-named Service;
  its endpoints in every cluster are then reached over TLS. Policies in other clusters are not consulted:
  each cluster's Gateways are configured from that cluster's objects.
- **Precedence** (the CRD's rule): per target and sectionName, the oldest policy (creationTimestamp), then
  ``namespace/name``; the others are ``Accepted=False Conflicted`` there. A port's own policy (sectionName)
  wins over a whole-Service policy; both are accepted. The winner applies even when it is invalid, so a
  newer or broader policy never takes over, and a backend whose policy is unusable answers 500: it is never
  reached in plaintext.
- **CA certificates**: ConfigMaps of the policy's namespace with a ``ca.crt`` of PEM certificates
  (checked with ``cryptography``, so Envoy never refuses the cluster). An invalid reference is
  ``ResolvedRefs=False`` (``InvalidKind`` or ``InvalidCACertificateRef``) and left out of the bundle; with
  none valid, the policy is ``Accepted=False NoValidCACertificate``. ``wellKnownCACertificates: System`` is
  the data plane's system trust store; any other value is ``Accepted=False Invalid``.
- **Names**: ``hostname`` is the SNI and, without ``subjectAltNames``, the DNS SAN the certificate must have;
  with them, the certificate must have one of them (Hostname: a DNS SAN, URI: a URI SAN) and the hostname is
  only the SNI.
- **Options** are implementation-specific and mcgw implements none: a policy with any is
  ``Accepted=False Invalid`` naming them, rather than connecting with less than the user asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mcgw.objects.model import CA_CERTIFICATE_KEY, CORE_GROUP, MCS_GROUP, BackendTLSPolicy, ConfigMap
from mcgw.semantics.gateway import conditions as c

SYSTEM_CA = "System"
# (group, kind, namespace, name, sectionName or None)
TargetKey = tuple[str, str, str, str, str | None]
NamespacedName = tuple[str, str]
_TARGET_KINDS = ((CORE_GROUP, "Service"), (MCS_GROUP, "ServiceImport"))


class UpstreamTLS(NamedTuple):
    """How a backend's Envoy cluster connects: TLS with this SNI, trusting ``ca`` (PEM; ``None``: the
    system's trust store), and requiring one of the SANs."""

    sni: str
    ca: str | None
    san_dns: tuple[str, ...]
    san_uri: tuple[str, ...]


class BackendTLS(NamedTuple):
    """The policy that applies to one target: ``tls`` to use, or ``None`` when that policy is unusable (the
    backend then answers 500), with ``problem`` saying why."""

    policy: NamespacedName
    tls: UpstreamTLS | None
    problem: str = ""


class PolicyOutcome(NamedTuple):
    """One policy's conditions, the same for each of its ancestors."""

    policy: BackendTLSPolicy
    accepted: c.Condition
    resolved_refs: c.Condition


class BackendTLSResolution(NamedTuple):
    by_target: Mapping[TargetKey, BackendTLS]
    policies: Mapping[NamespacedName, PolicyOutcome]

    def lookup(self, kind: str, namespace: str, name: str, port_name: str | None) -> BackendTLS | None:
        """The policy for a Service or ServiceImport backend's port (``port_name`` its name, if any)."""
        if not self.by_target:
            return None
        kinds = _TARGET_KINDS[:1] if kind == "Service" else _TARGET_KINDS[::-1]
        for group, target_kind in kinds:
            if port_name:
                found = self.by_target.get((group, target_kind, namespace, name, port_name))
                if found is not None:
                    return found
            found = self.by_target.get((group, target_kind, namespace, name, None))
            if found is not None:
                return found
        return None

    def covers(self, kind: str, namespace: str, name: str, port_name: str | None) -> bool:
        """Whether a policy applies to this backend port (a :data:`TlsLookup` for backend resolution)."""
        return self.lookup(kind, namespace, name, port_name) is not None

    @property
    def targeted(self) -> frozenset[NamespacedName]:
        """(namespace, name) of every Service and ServiceImport some policy applies to."""
        return frozenset((key[2], key[3]) for key in self.by_target)


NO_BACKEND_TLS = BackendTLSResolution({}, {})


@lru_cache(maxsize=128)
def ca_problem(pem: str) -> str | None:
    """Why a ``ca.crt`` value is no CA bundle Envoy would load, or ``None``."""
    if not pem.strip():
        return f"has an empty {CA_CERTIFICATE_KEY}"
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError as error:
        return f"{CA_CERTIFICATE_KEY} is not a PEM certificate bundle ({error})"
    return None


@lru_cache(maxsize=128)
def certificates_only(pem: str) -> str:
    """The certificates of a bundle ``ca_problem`` accepted, written again: nothing else of it (a private
    key pasted into ``ca.crt``, comments) reaches Envoy or any output."""
    return "".join(certificate.public_bytes(serialization.Encoding.PEM).decode()
                   for certificate in x509.load_pem_x509_certificates(pem.encode()))


def _age(policy: BackendTLSPolicy) -> tuple[str, str, str]:
    return policy.metadata.creation_timestamp, policy.metadata.namespace, policy.metadata.name


def _name(policy: BackendTLSPolicy) -> NamespacedName:
    return policy.metadata.namespace, policy.metadata.name


class _Checked(NamedTuple):
    tls: UpstreamTLS | None
    accepted: tuple[str, str] | None  # (reason, message) when not accepted for itself
    resolved: tuple[str, str] | None  # (reason, message) when a reference does not resolve


def _check(policy: BackendTLSPolicy, config_maps: Mapping[NamespacedName, object]) -> _Checked:
    """The policy on its own: its TLS settings, or why it cannot be used."""
    spec, validation = policy.spec, policy.spec.validation
    namespace = policy.metadata.namespace
    unsupported = [f"{ref.group or 'core'}/{ref.kind} {ref.name}" for ref in spec.target_refs
                   if (ref.group, ref.kind) not in _TARGET_KINDS]
    if unsupported:
        return _Checked(None, (c.REASON_INVALID, f"targetRef {unsupported[0]} is not supported; target a core "
                                                 "Service or a multicluster.x-k8s.io ServiceImport"), None)
    if spec.options:
        keys = ", ".join(sorted(spec.options))
        return _Checked(None, (c.REASON_INVALID, f"options {keys}: mcgw implements no BackendTLSPolicy options; "
                                                 "remove them"), None)
    well_known = validation.well_known_ca_certificates or ""
    refs = validation.ca_certificate_refs
    if refs and well_known:
        return _Checked(None, (c.REASON_INVALID, "set either caCertificateRefs or wellKnownCACertificates, "
                                                 "not both"), None)
    if well_known and well_known != SYSTEM_CA:
        return _Checked(None, (c.REASON_INVALID, f"wellKnownCACertificates {well_known!r} is not supported; "
                                                 f"use {SYSTEM_CA!r} or caCertificateRefs"), None)
    if not refs and not well_known:
        return _Checked(None, (c.REASON_INVALID, "set caCertificateRefs or wellKnownCACertificates"), None)
    dns: list[str] = []
    uri: list[str] = []
    for index, san in enumerate(validation.subject_alt_names):
        value = san.hostname if san.type == "Hostname" else san.uri
        if not value:
            field = "hostname" if san.type == "Hostname" else "uri"
            return _Checked(None, (c.REASON_INVALID, f"subjectAltNames[{index}] of type {san.type} needs {field}"),
                            None)
        (dns if san.type == "Hostname" else uri).append(value)
    if not validation.subject_alt_names:
        dns.append(validation.hostname)
    bundle: list[str] = []
    resolved: tuple[str, str] | None = None
    for index, ref in enumerate(refs):
        where = f"caCertificateRefs[{index}] {ref.group or 'core'}/{ref.kind} {namespace}/{ref.name}"
        problem: tuple[str, str] | None = None
        if (ref.group, ref.kind) != (CORE_GROUP, "ConfigMap"):
            problem = (c.REASON_INVALID_KIND, f"{where}: only core ConfigMaps are supported")
        elif not isinstance(found := config_maps.get((namespace, ref.name)), ConfigMap):
            problem = (c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} does not exist")
        elif found.ca_crt is None:
            problem = (c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} has no {CA_CERTIFICATE_KEY} key")
        elif reason := ca_problem(found.ca_crt):
            problem = (c.REASON_INVALID_CA_CERTIFICATE_REF, f"{where} {reason}")
        else:
            bundle.append(certificates_only(found.ca_crt))
        if problem is not None and resolved is None:
            resolved = problem
    if refs and not bundle:
        assert resolved is not None
        return _Checked(None, (c.REASON_NO_VALID_CA_CERTIFICATE, f"no valid CA certificate: {resolved[1]}"),
                        resolved)
    tls = UpstreamTLS(validation.hostname, "".join(bundle) if bundle else None, tuple(dns), tuple(uri))
    return _Checked(tls, None, resolved)


def resolve_backend_tls(policies: Iterable[BackendTLSPolicy],
                        config_maps: Mapping[NamespacedName, object]) -> BackendTLSResolution:
    """Each policy's conditions and, per target, the policy that applies there."""
    ordered = sorted(policies, key=_age)
    if not ordered:
        return NO_BACKEND_TLS
    checked = {_name(policy): _check(policy, config_maps) for policy in ordered}
    by_target: dict[TargetKey, BackendTLS] = {}
    lost: dict[NamespacedName, str] = {}
    for policy in ordered:
        key = _name(policy)
        outcome = checked[key]
        for ref in policy.spec.target_refs:
            if (ref.group, ref.kind) not in _TARGET_KINDS:
                continue
            target = (ref.group, ref.kind, policy.metadata.namespace, ref.name, ref.section_name or None)
            winner = by_target.get(target)
            if winner is not None:
                section = f" port {ref.section_name}" if ref.section_name else ""
                lost.setdefault(key, f"{ref.kind} {policy.metadata.namespace}/{ref.name}{section} is already "
                                     f"targeted by the older BackendTLSPolicy {winner.policy[1]}")
                continue
            problem = "" if outcome.tls is not None else \
                f"BackendTLSPolicy {key[0]}/{key[1]} is not usable: {(outcome.accepted or ('', ''))[1]}"
            by_target[target] = BackendTLS(key, outcome.tls, problem)
    results = {}
    for policy in ordered:
        key, generation = _name(policy), policy.metadata.generation
        outcome = checked[key]
        if outcome.accepted is not None:
            accepted = c.Condition(c.ACCEPTED, "False", *outcome.accepted, generation)
        elif key in lost:
            accepted = c.Condition(c.ACCEPTED, "False", c.REASON_CONFLICTED, lost[key], generation)
        else:
            accepted = c.shared(c.ACCEPTED, "True", c.REASON_ACCEPTED, "the policy is applied", generation)
        if outcome.resolved is not None:
            resolved = c.Condition(c.RESOLVED_REFS, "False", *outcome.resolved, generation)
        else:
            resolved = c.shared(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS,
                                "all CA certificate references resolved", generation)
        results[key] = PolicyOutcome(policy, accepted, resolved)
    return BackendTLSResolution(by_target, results)
