"""The CORS filter (HTTPRouteCORS): what the CRD accepts, and how an allowed origin is matched.

An origin is ``scheme://host[:port]``; without a port it means the scheme's default one, so both forms
match it. A host ``*`` matches any host and ``*.example.com`` any host ending in ``.example.com``
(any number of labels); ``*`` alone matches every origin. Browsers send origins in lowercase, so the
configured ones are matched in lowercase. Wildcards are RE2 patterns, which Envoy compiles under the
same program size limit as a route's, checked by the caller.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mcgw.objects.model import CORS
from mcgw.semantics.gateway.limits import MAX_HEADER_NAME_LENGTH, header_name_problem, port_problem

MAX_ORIGINS = 64  # the CRD's limits
MAX_ORIGIN_LENGTH = 253
MAX_CORS_HEADERS = 64
MAX_AGE = 2**31 - 1  # int32
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_ORIGIN = re.compile(r"^(https?)://((?:\*\.)?(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+|\*)(?::([0-9]{1,5}))?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=4096)
def origin_matchers(origin: str) -> tuple[tuple[str, bool], ...]:
    """How Envoy is to match one allowed origin (which the CRD's pattern accepts): (value, is a regex)
    pairs, any of which matches it."""
    if origin == "*":
        return ((".*", True),)
    found = _ORIGIN.fullmatch(origin)
    assert found is not None, origin
    scheme, host, port_text = found.group(1).lower(), found.group(2).lower(), found.group(3)
    default = _DEFAULT_PORTS[scheme]
    port = int(port_text) if port_text else default
    if "*" not in host:
        base = f"{scheme}://{host}"
        return ((base, False), (f"{base}:{default}", False)) if port == default else ((f"{base}:{port}", False),)
    any_host = "[^/:]+"
    pattern_host = any_host if host == "*" else any_host + re.escape(host[1:])
    port_pattern = f"(:{default})?" if port == default else f":{port}"
    return ((f"{scheme}://{pattern_host}{port_pattern}", True),)


def _origin_problem(origin: str) -> str | None:
    if len(origin) > MAX_ORIGIN_LENGTH:
        return f"CORS allowOrigins entry {origin[:40]!r}... is longer than {MAX_ORIGIN_LENGTH} characters"
    if origin == "*":
        return None
    found = _ORIGIN.fullmatch(origin)
    if found is None:
        return (f"CORS allowOrigins entry {origin!r} is not an origin; use scheme://host or scheme://host:port with "
                f"scheme http or https and a host that may start with '*.' (or is '*'), or '*' alone")
    if found.group(3) is not None:
        return port_problem(int(found.group(3)), f"CORS allowOrigins entry {origin!r}: port")
    return None


def _list_problem(values: tuple[str, ...], field: str, limit: int, wildcard_alone: bool) -> str | None:
    if len(values) > limit:
        return f"CORS {field} has {len(values)} entries; use at most {limit}"
    if len(set(values)) != len(values):
        repeated = next(v for v in values if values.count(v) > 1)
        return f"CORS {field} lists {repeated!r} more than once; list each once"
    if wildcard_alone and "*" in values and len(values) > 1:
        return f"CORS {field} has '*' alongside other entries; use '*' alone, or leave it out"
    return None


def cors_problem(cors: CORS) -> str | None:
    """The CRD's rules for a CORS filter, so that what Envoy is given means what the spec says."""
    if problem := _list_problem(cors.allow_origins, "allowOrigins", MAX_ORIGINS, True):
        return problem
    for origin in cors.allow_origins:
        if problem := _origin_problem(origin):
            return problem
    if problem := _list_problem(cors.allow_methods, "allowMethods", len(CORS_METHODS), True):
        return problem
    for method in cors.allow_methods:
        if method != "*" and method not in CORS_METHODS:
            return f"CORS allowMethods entry {method!r} is not supported; use one of {', '.join(CORS_METHODS)}, or '*'"
    for field, headers, wildcard_alone in (("allowHeaders", cors.allow_headers, True),
                                           ("exposeHeaders", cors.expose_headers, False)):
        if problem := _list_problem(headers, field, MAX_CORS_HEADERS, wildcard_alone):
            return problem
        for name in headers:
            if header_name_problem(name) or len(name) > MAX_HEADER_NAME_LENGTH:
                return f"CORS {field} entry {name[:40]!r} is not a valid HTTP header name"
    if not 1 <= cors.max_age <= MAX_AGE:
        return f"CORS maxAge {cors.max_age} is outside 1..{MAX_AGE}; use a number of seconds in that range"
    return None
