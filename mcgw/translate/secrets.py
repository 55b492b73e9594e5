"""Secret IR → Envoy SDS ``Secret``: a listener's (or the Gateway's client) certificate chain and private key,
or the CA certificates an HTTPS port verifies client certificates against, as their own resource.

Secrets are the one resource that holds private keys, so :func:`redacted` is what anything that shows
resources (``mcgw translate``, golden files, debugging) renders instead.
"""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from mcgw import ir


def delivered(gateway: ir.GatewayIR, tls_clusters: bool) -> tuple[ir.SecretIR, ...]:
    """The Gateway's secrets that its Envoys receive: the ones its TLS chains (and TLS routes that terminate)
    name, and its client certificate only while one of its clusters (``tls_clusters``) is reached over TLS,
    so no snapshot holds a key that no listener or cluster names."""
    named = {name for port in gateway.http for chain in port.tls for name in chain.certificates}
    # A TLS terminate listener's certificates only while a route's filter chain uses them.
    named |= {name for port in gateway.tls_terminate for route in port.routes for name in route.certificates}
    if gateway.client_certificate is not None and tls_clusters:
        named.add(gateway.client_certificate)
    return tuple(item for item in gateway.secrets if item.name in named)


def secret(item: ir.SecretIR) -> secret_pb2.Secret:
    return secret_pb2.Secret(name=item.name, tls_certificate={
        "certificate_chain": {"inline_string": item.certificate_chain},
        "private_key": {"inline_string": item.private_key},
    })


def trusted_ca(item: ir.TrustedCaIR) -> secret_pb2.Secret:
    return secret_pb2.Secret(name=item.name, validation_context={"trusted_ca": {"inline_string": item.ca_certificates}})


def redacted(message: Message) -> Message:
    """``message`` as it may be shown: a Secret's private key replaced by ``[redacted]``, anything else as is."""
    if not isinstance(message, secret_pb2.Secret) or not message.HasField("tls_certificate"):
        return message
    shown = secret_pb2.Secret()
    shown.CopyFrom(message)
    key = shown.tls_certificate.private_key
    key.Clear()
    key.inline_string = ir.REDACTED
    result: Message = shown
    return result
