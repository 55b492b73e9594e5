"""The limits of the Gateway API CRDs (v1.6) and of Envoy's protos, checked in the semantics.

An API server enforces the CRD limits only for objects written after the CRD was installed, and files
are never validated by one, so every value that reaches translation is checked here once more. Each
check returns why a value is refused (a message that says what to change), or ``None``. Checks of
values that repeat across routes are cached: re-translation sees the same strings again and again.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

MAX_LISTENERS = 64
MAX_HOSTNAMES = 16
MAX_HOSTNAME_LENGTH = 253
MAX_SECTION_NAME_LENGTH = 253
MAX_PATH_LENGTH = 1024
MAX_HEADER_NAME_LENGTH = 256
MAX_MATCHERS = 16  # header matches, query matches, and header modifiers' set/add/remove, each
MAX_BACKEND_REFS = 16
MAX_WEIGHT = 1_000_000
MAX_WEIGHT_SUM = 2**32 - 1  # Envoy sums a route's weights in a uint32
MIN_PORT, MAX_PORT = 1, 65535

_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECTION_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The CRD's pattern for Exact and PathPrefix values: RFC 3986 path characters, so no "?", "#", space or control.
_PATH = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")  # an RFC 9110 token, as the CRD requires
_UNMODIFIABLE_HEADERS = frozenset({"host"})  # Envoy refuses to add, set or remove Host (and ":" names)


@lru_cache(maxsize=65536)
def hostname_problem(hostname: str) -> str | None:
    """Why a listener or route hostname is refused: the CRD's pattern (lowercase DNS labels, an optional
    leading ``*.``) and length. An IP address is not a hostname there, and CR/LF would break Envoy's domains."""
    if len(hostname) > MAX_HOSTNAME_LENGTH:
        return f"hostname {hostname[:40]!r}... is {len(hostname)} characters; use at most {MAX_HOSTNAME_LENGTH}"
    if not _HOSTNAME.fullmatch(hostname):
        return (f"hostname {hostname!r} is not a valid DNS name; use lowercase letters, digits, '-' and '.', "
                "optionally starting with '*.'")
    if is_ip(hostname):
        return f"hostname {hostname!r} is an IP address; hostnames must be DNS names"
    return None


@lru_cache(maxsize=4096)
def precise_hostname_problem(hostname: str) -> str | None:
    """Why a redirect or rewrite hostname is refused: the CRD's PreciseHostname, a hostname without a
    wildcard (a request cannot be sent to ``*.example.com``)."""
    if hostname.startswith("*"):
        return f"hostname {hostname!r} has a wildcard; a redirect or rewrite needs a precise hostname"
    if (problem := hostname_problem(hostname)) and not _HOSTNAME.fullmatch(hostname):
        return f"hostname {hostname!r} is not a valid DNS name; use lowercase letters, digits, '-' and '.'"
    return problem


def is_ip(value: str) -> bool:
    """Whether ``value`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def route_hostnames_problem(hostnames: tuple[str, ...]) -> str | None:
    """Why a route's hostnames are refused (too many, or one is invalid), or None."""
    if len(hostnames) > MAX_HOSTNAMES:
        return f"the route has {len(hostnames)} hostnames; use at most {MAX_HOSTNAMES}"
    for hostname in hostnames:
        if problem := hostname_problem(hostname):
            return problem
    return None


@lru_cache(maxsize=4096)
def section_name_problem(name: str) -> str | None:
    """Why a listener name is refused: the CRD's SectionName (a lowercase DNS subdomain, at most 253)."""
    if len(name) > MAX_SECTION_NAME_LENGTH:
        return f"listener name {name[:40]!r}... is {len(name)} characters; use at most {MAX_SECTION_NAME_LENGTH}"
    if not _SECTION_NAME.fullmatch(name):
        return f"listener name {name!r} is not valid; use lowercase letters, digits, '-' and '.'"
    return None


def port_problem(port: int, what: str) -> str | None:
    if MIN_PORT <= port <= MAX_PORT:
        return None
    return f"{what} {port} is outside {MIN_PORT}..{MAX_PORT}; use a port in that range"


@lru_cache(maxsize=65536)
def path_problem(path_type: str, value: str) -> str | None:
    """Why an Exact or PathPrefix value is refused: it must start with "/", hold only path characters (no
    "?" or "#", which Envoy would never see in a path), no "//" or dot segments, at most 1024 characters."""
    if len(value) > MAX_PATH_LENGTH:
        return f"path {value[:40]!r}... is {len(value)} characters; use at most {MAX_PATH_LENGTH}"
    if path_type == "RegularExpression":
        return None
    if not value.startswith("/"):
        return f"path {value!r} does not start with '/', so it would never match; start it with '/'"
    if not _PATH.fullmatch(value):
        return (f"path {value!r} holds characters a path cannot ('?', '#', spaces or control characters); "
                "match on queryParams for a query, and percent-encode the rest")
    if "//" in value or "/./" in value or "/../" in value or value.endswith(("/..", "/.")) or "%2f" in value.lower():
        return f"path {value!r} has '//', a dot segment or an encoded '/'; use a normalised path"
    return None


@lru_cache(maxsize=65536)
def header_name_problem(name: str) -> str | None:
    if len(name) > MAX_HEADER_NAME_LENGTH:
        return f"header name {name[:40]!r}... is longer than {MAX_HEADER_NAME_LENGTH} characters"
    if not _HEADER_NAME.fullmatch(name):
        return f"header name {name!r} is not a valid HTTP header name"
    return None


@lru_cache(maxsize=65536)
def modifiable_header_problem(name: str) -> str | None:
    """Names a header modifier may not touch: Envoy refuses the whole route table for Host or ':' names."""
    if problem := header_name_problem(name):
        return problem
    if name.lower() in _UNMODIFIABLE_HEADERS:
        return f"header {name!r} cannot be modified; use a URLRewrite hostname instead"
    return None


def header_value_problem(name: str, value: str) -> str | None:
    """Envoy refuses header values holding CR, LF or NUL (they would split or end the header). Most values
    are printable, which one C-level scan proves; only the others are searched for the three characters."""
    if value.isprintable():
        return None
    if "\r" in value or "\n" in value or "\0" in value:
        return f"value of header {name!r} contains CR, LF or NUL; remove those characters"
    return None


def weights_problem(weights: list[int]) -> str | None:
    """Each weight in 0..1,000,000 (the CRD), and their sum within Envoy's uint32."""
    for weight in weights:
        if not 0 <= weight <= MAX_WEIGHT:
            return f"backendRef weight {weight} is outside 0..{MAX_WEIGHT}; use a weight in that range"
    if sum(weights) > MAX_WEIGHT_SUM:
        return f"the backendRef weights add up to {sum(weights)}, more than {MAX_WEIGHT_SUM}; use smaller weights"
    return None


@lru_cache(maxsize=65536)
def endpoint_address_ok(address: str) -> bool:
    """An endpoint address Envoy can connect to: an IPv4 or IPv6 address (not a name, not garbage)."""
    return is_ip(address)
