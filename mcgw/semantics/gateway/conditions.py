"""Condition types and reasons, named exactly as the Gateway API v1 spec names them.

A condition is plain data; the status writer merges ours into the object's status and never removes
conditions that other controllers own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, NamedTuple

# Condition types.
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
PARTIALLY_INVALID = "PartiallyInvalid"
OVERLAPPING_TLS_CONFIG = "OverlappingTLSConfig"
INSECURE_FRONTEND_VALIDATION_MODE = "InsecureFrontendValidationMode"

# GatewayClass reasons.
REASON_ACCEPTED = "Accepted"
REASON_INVALID_PARAMETERS = "InvalidParameters"
REASON_UNSUPPORTED = "Unsupported"
REASON_UNSUPPORTED_VERSION = "UnsupportedVersion"
REASON_PENDING = "Pending"

# Gateway reasons.
REASON_LISTENERS_NOT_VALID = "ListenersNotValid"
REASON_INVALID = "Invalid"
REASON_UNSUPPORTED_ADDRESS = "UnsupportedAddress"
REASON_PROGRAMMED = "Programmed"
REASON_NO_RESOURCES = "NoResources"
REASON_ADDRESS_NOT_ASSIGNED = "AddressNotAssigned"
REASON_ADDRESS_NOT_USABLE = "AddressNotUsable"
REASON_CONFIGURATION_CHANGED = "ConfigurationChanged"
REASON_INVALID_CLIENT_CERTIFICATE_REF = "InvalidClientCertificateRef"
REASON_LISTENERS_NOT_RESOLVED = "ListenersNotResolved"

# Listener reasons.
REASON_PORT_UNAVAILABLE = "PortUnavailable"
REASON_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
REASON_UNSUPPORTED_VALUE = "UnsupportedValue"
REASON_INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
REASON_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
REASON_REF_NOT_PERMITTED = "RefNotPermitted"
REASON_RESOLVED_REFS = "ResolvedRefs"
REASON_HOSTNAME_CONFLICT = "HostnameConflict"
REASON_PROTOCOL_CONFLICT = "ProtocolConflict"
REASON_NO_CONFLICTS = "NoConflicts"
REASON_OVERLAPPING_HOSTNAMES = "OverlappingHostnames"
REASON_INVALID_CA_CERTIFICATE_KIND = "InvalidCACertificateKind"

# Route reasons.
REASON_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
REASON_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
REASON_NO_MATCHING_PARENT = "NoMatchingParent"
REASON_INCOMPATIBLE_FILTERS = "IncompatibleFilters"
REASON_INVALID_KIND = "InvalidKind"
REASON_BACKEND_NOT_FOUND = "BackendNotFound"

# Policy reasons (GEP-713) and BackendTLSPolicy's own.
REASON_CONFLICTED = "Conflicted"
REASON_NO_VALID_CA_CERTIFICATE = "NoValidCACertificate"
REASON_INVALID_CA_CERTIFICATE_REF = "InvalidCACertificateRef"

# Gateway conditions mcgw sets only while they hold: the status writer removes a stored one that mcgw no
# longer computes (the spec removes InsecureFrontendValidationMode when the fallback is turned off).
REMOVED_WHEN_ABSENT = frozenset({INSECURE_FRONTEND_VALIDATION_MODE})

Status = Literal["True", "False", "Unknown"]


class Condition(NamedTuple):
    """One status condition as mcgw computes it; the writer adds lastTransitionTime.

    A named tuple: immutable, and cheap to build for thousands of routes."""

    type: str
    status: Status
    reason: str
    message: str
    observed_generation: int

    def as_dict(self) -> dict[str, object]:
        return {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message,
                "observedGeneration": self.observed_generation}


@lru_cache(maxsize=4096)
def shared(type: str, status: Status, reason: str, message: str, observed_generation: int) -> Condition:
    """An equal condition object for every route that reports the same outcome (most report success):
    one object instead of thousands to build and for the garbage collector to track."""
    return Condition(type, status, reason, message, observed_generation)
