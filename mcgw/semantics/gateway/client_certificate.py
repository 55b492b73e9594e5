"""The Gateway's own references (``spec.tls.backend.clientCertificateRef``) and its ResolvedRefs condition.

The client certificate is what the Gateway presents to every backend it reaches over TLS (a
BackendTLSPolicy decides which do). It must be a ``kubernetes.io/tls`` Secret whose certificate and key
Envoy accepts; one in another namespace needs a ReferenceGrant there, and that is checked first, since the
spec keeps ``InvalidClientCertificateRef`` for references that are allowed. An unusable reference leaves
the Gateway accepted and programmed (the spec: ResolvedRefs does not affect them), and its backends are
then reached without a client certificate, so a backend that requires one refuses the handshake.

The Gateway's ResolvedRefs also summarises its listeners': ``ListenersNotResolved`` when one of them has
a reference that does not resolve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from mcgw.objects.model import CORE_GROUP, GATEWAY_GROUP, Gateway, ReferenceGrant, Secret
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.listeners import GatewayResult, pem_problem
from mcgw.semantics.gateway.refs import Reference, is_permitted

SecretKey = tuple[str, str]  # (namespace, name)


def client_certificate(gateway: Gateway, secrets: Mapping[SecretKey, Secret],
                       grants: Iterable[ReferenceGrant]) -> tuple[SecretKey | None, tuple[str, str] | None]:
    """(the Secret to present to backends, None) or (None, (reason, message)) when the reference is unusable;
    (None, None) when the Gateway names no client certificate."""
    backend = gateway.spec.tls.backend if gateway.spec.tls is not None else None
    ref = backend.client_certificate_ref if backend is not None else None
    if ref is None:
        return None, None
    own = gateway.metadata.namespace
    namespace = ref.namespace or own
    where = f"{namespace}/{ref.name}"
    reference = Reference(GATEWAY_GROUP, "Gateway", own, ref.group, ref.kind, namespace, ref.name)
    if not is_permitted(reference, grants):
        return None, (c.REASON_REF_NOT_PERMITTED,
                      f"spec.tls.backend.clientCertificateRef {where} is in another namespace and no ReferenceGrant "
                      f"in {namespace} allows Gateways from {own} to use it")
    if (ref.group, ref.kind) != (CORE_GROUP, "Secret"):
        return None, (c.REASON_INVALID_CLIENT_CERTIFICATE_REF,
                      f"spec.tls.backend.clientCertificateRef {where} is a {ref.group or 'core'}/{ref.kind}; only "
                      "core Secrets of type kubernetes.io/tls are supported")
    secret = secrets.get((namespace, ref.name))
    if secret is None:
        return None, (c.REASON_INVALID_CLIENT_CERTIFICATE_REF,
                      f"spec.tls.backend.clientCertificateRef: no Secret {where} of type kubernetes.io/tls exists")
    if secret.type != "kubernetes.io/tls" or not {"tls.crt", "tls.key"} <= set(secret.data):
        return None, (c.REASON_INVALID_CLIENT_CERTIFICATE_REF,
                      f"spec.tls.backend.clientCertificateRef: Secret {where} is not a kubernetes.io/tls Secret "
                      "with tls.crt and tls.key")
    if problem := pem_problem(secret.data["tls.crt"], secret.data["tls.key"]):
        return None, (c.REASON_INVALID_CLIENT_CERTIFICATE_REF,
                      f"spec.tls.backend.clientCertificateRef: Secret {where}: {problem}")
    return (namespace, ref.name), None


def with_gateway_refs(result: GatewayResult, secrets: Mapping[SecretKey, Secret],
                      grants: Iterable[ReferenceGrant]) -> GatewayResult:
    """``result`` with the Gateway's ResolvedRefs condition and its client certificate."""
    gateway = result.gateway
    generation = gateway.metadata.generation
    key, problem = client_certificate(gateway, secrets, grants)
    unresolved = [listener.name for listener in result.listeners
                  if any(cond.type == c.RESOLVED_REFS and cond.status == "False" for cond in listener.conditions)]
    if problem is not None:
        resolved = c.Condition(c.RESOLVED_REFS, "False", *problem, generation)
    elif unresolved:
        resolved = c.Condition(c.RESOLVED_REFS, "False", c.REASON_LISTENERS_NOT_RESOLVED,
                               f"listeners with references that do not resolve: {', '.join(unresolved)}", generation)
    else:
        resolved = c.Condition(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS, "all references resolved", generation)
    return replace(result, conditions=[*result.conditions, resolved], client_certificate=key)
