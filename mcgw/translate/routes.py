"""Route IR → Envoy routes and route tables, encoded straight to protobuf bytes.

Route tables are nearly all of a Gateway's output: 1,000 HTTPRoutes of 5 rules are 5,000 Envoy routes,
about half a megabyte. Building each route as a protobuf message and then serialising it cost more
than all the Gateway API semantics, so each route is written field by field in protobuf's wire format,
in field-number order. Those are exactly the bytes of upb's deterministic serialisation of the same
message; the tests check it against routes built with protobuf constructors
(``tests/mcgw/route_oracle.py``) for generated route IR. Pieces that many routes share (a backend's
weighted-cluster entry, a retry policy, a header option, a duration) are encoded once and cached.

Field numbers and enum values come from the message descriptors at import, never written by hand.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import lru_cache

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2
from google.protobuf.descriptor import Descriptor

from mcgw import ir
from mcgw.support.durations import seconds_and_nanos
from mcgw.translate.listeners import CORS_FILTER, pack

_LENGTH_DELIMITED, _VARINT = 2, 0
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    """A protobuf base-128 varint (non-negative values: every field written here is unsigned)."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(descriptor: Descriptor, name: str, wire_type: int = _LENGTH_DELIMITED) -> bytes:
    return varint(descriptor.fields_by_name[name].number << 3 | wire_type)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: a string or an embedded message."""
    size = len(payload)
    return tag + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + payload


def _text(tag: bytes, value: str) -> bytes:
    """A plain proto3 string: absent when empty. (Strings in a oneof are always written, with ``_ld``.)"""
    return _ld(tag, value.encode()) if value else b""


def _number(tag: bytes, value: int) -> bytes:
    """A proto3 unsigned integer or enum: absent when zero."""
    return tag + varint(value) if value else b""


_ROUTE = rc.Route.DESCRIPTOR
_R_MATCH, _R_ACTION, _R_REDIRECT = _tag(_ROUTE, "match"), _tag(_ROUTE, "route"), _tag(_ROUTE, "redirect")
_R_DIRECT = _tag(_ROUTE, "direct_response")
_R_REQUEST_ADD, _R_RESPONSE_ADD = _tag(_ROUTE, "request_headers_to_add"), _tag(_ROUTE, "response_headers_to_add")
_R_RESPONSE_REMOVE = _tag(_ROUTE, "response_headers_to_remove")
_R_REQUEST_REMOVE = _tag(_ROUTE, "request_headers_to_remove")
_R_NAME = _tag(_ROUTE, "name")
_R_FILTER_CONFIG = _tag(_ROUTE, "typed_per_filter_config")
_FILTER_CONFIG_ENTRY = _ROUTE.fields_by_name["typed_per_filter_config"].message_type
_FC_KEY, _FC_VALUE = _tag(_FILTER_CONFIG_ENTRY, "key"), _tag(_FILTER_CONFIG_ENTRY, "value")
_ANY_TYPE_URL, _ANY_VALUE = _tag(any_pb2.Any.DESCRIPTOR, "type_url"), _tag(any_pb2.Any.DESCRIPTOR, "value")
_CORS = cors_pb2.CorsPolicy.DESCRIPTOR
_C_ORIGIN, _C_METHODS = _tag(_CORS, "allow_origin_string_match"), _tag(_CORS, "allow_methods")
_C_HEADERS, _C_EXPOSE = _tag(_CORS, "allow_headers"), _tag(_CORS, "expose_headers")
_C_MAX_AGE, _C_CREDENTIALS = _tag(_CORS, "max_age"), _tag(_CORS, "allow_credentials")
_C_TYPE_URL = _text(_ANY_TYPE_URL, f"type.googleapis.com/{_CORS.full_name}")
# A preflight from an origin that is not allowed is answered at the gateway (200, without
# Access-Control-Allow-Origin, so the browser refuses the request) rather than forwarded.
_C_ANSWER_OTHER_PREFLIGHTS = _ld(_tag(_CORS, "forward_not_matching_preflights"), b"")  # a BoolValue holding false

_MATCH = rc.RouteMatch.DESCRIPTOR
_M_PREFIX, _M_PATH, _M_HEADERS = _tag(_MATCH, "prefix"), _tag(_MATCH, "path"), _tag(_MATCH, "headers")
_M_QUERY, _M_REGEX = _tag(_MATCH, "query_parameters"), _tag(_MATCH, "safe_regex")
_M_SEPARATED_PREFIX = _tag(_MATCH, "path_separated_prefix")
_PREFIX_ROOT = _ld(_M_PREFIX, b"/")
_HEADER_NAME, _HEADER_STRING = _tag(rc.HeaderMatcher.DESCRIPTOR, "name"), _tag(rc.HeaderMatcher.DESCRIPTOR,
                                                                               "string_match")
_QUERY_NAME = _tag(rc.QueryParameterMatcher.DESCRIPTOR, "name")
_QUERY_STRING = _tag(rc.QueryParameterMatcher.DESCRIPTOR, "string_match")
_STRING_EXACT = _tag(string_pb2.StringMatcher.DESCRIPTOR, "exact")
_STRING_REGEX = _tag(string_pb2.StringMatcher.DESCRIPTOR, "safe_regex")
_REGEX = _tag(regex_pb2.RegexMatcher.DESCRIPTOR, "regex")

_ACTION = rc.RouteAction.DESCRIPTOR
_A_CLUSTER, _A_WEIGHTED = _tag(_ACTION, "cluster"), _tag(_ACTION, "weighted_clusters")
_A_PREFIX_REWRITE, _A_HOST_REWRITE = _tag(_ACTION, "prefix_rewrite"), _tag(_ACTION, "host_rewrite_literal")
_A_TIMEOUT, _A_RETRY = _tag(_ACTION, "timeout"), _tag(_ACTION, "retry_policy")
_A_MIRRORS, _A_REGEX_REWRITE = _tag(_ACTION, "request_mirror_policies"), _tag(_ACTION, "regex_rewrite")
# Invalid backends have no Envoy cluster, so their weighted share finds none: answer 500 for it.
_A_NOT_FOUND_500 = _number(_tag(_ACTION, "cluster_not_found_response_code", _VARINT),
                           rc.RouteAction.ClusterNotFoundResponseCode.Value("INTERNAL_SERVER_ERROR"))
_WEIGHTED_CLUSTERS = _tag(rc.WeightedCluster.DESCRIPTOR, "clusters")
_CLUSTER_WEIGHT = rc.WeightedCluster.ClusterWeight.DESCRIPTOR
_CW_NAME, _CW_WEIGHT = _tag(_CLUSTER_WEIGHT, "name"), _tag(_CLUSTER_WEIGHT, "weight")
_CW_REQUEST_ADD, _CW_REQUEST_REMOVE = (_tag(_CLUSTER_WEIGHT, "request_headers_to_add"),
                                       _tag(_CLUSTER_WEIGHT, "request_headers_to_remove"))
_CW_RESPONSE_ADD, _CW_RESPONSE_REMOVE = (_tag(_CLUSTER_WEIGHT, "response_headers_to_add"),
                                         _tag(_CLUSTER_WEIGHT, "response_headers_to_remove"))
_WRAPPER_VALUE = b"\x08"  # google.protobuf.*Value.value: field 1, varint
_MIRROR_POLICY = rc.RouteAction.RequestMirrorPolicy.DESCRIPTOR
_MIRROR_CLUSTER, _MIRROR_FRACTION = _tag(_MIRROR_POLICY, "cluster"), _tag(_MIRROR_POLICY, "runtime_fraction")
_FRACTION_DEFAULT = _tag(base_pb2.RuntimeFractionalPercent.DESCRIPTOR, "default_value")
_PERCENT = percent_pb2.FractionalPercent.DESCRIPTOR
_PERCENT_NUMERATOR, _PERCENT_DENOMINATOR = _tag(_PERCENT, "numerator", _VARINT), _tag(_PERCENT, "denominator", _VARINT)
# Envoy's denominators, smallest first: a share is written with the first that holds it exactly.
_DENOMINATORS = tuple((base, percent_pb2.FractionalPercent.DenominatorType.Value(name))
                      for base, name in ((100, "HUNDRED"), (10_000, "TEN_THOUSAND"), (1_000_000, "MILLION")))
_SUBSTITUTE = rc.RouteAction.DESCRIPTOR.fields_by_name["regex_rewrite"].message_type
# A full-path rewrite replaces the whole path: the regex ^.*$ with the new path.
_ANY_PATH = _ld(_tag(_SUBSTITUTE, "pattern"), _ld(_REGEX, b"^.*$"))
_SUBSTITUTION = _tag(_SUBSTITUTE, "substitution")

_RETRY = rc.RetryPolicy.DESCRIPTOR
_Y_ON, _Y_NUM, _Y_PER_TRY = _tag(_RETRY, "retry_on"), _tag(_RETRY, "num_retries"), _tag(_RETRY, "per_try_timeout")
_Y_CODES, _Y_BACKOFF = _tag(_RETRY, "retriable_status_codes"), _tag(_RETRY, "retry_back_off")
_Y_BASE_INTERVAL = _tag(rc.RetryPolicy.RetryBackOff.DESCRIPTOR, "base_interval")
# Retries that move on: to another host, and to the next priority once one has been tried.
_Y_MOVE_ON = b"".join((
    _ld(_tag(_RETRY, "retry_priority"), rc.RetryPolicy.RetryPriority(
        name="envoy.retry_priorities.previous_priorities",
        typed_config=pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1)),
    ).SerializeToString(deterministic=True)),
    _ld(_tag(_RETRY, "retry_host_predicate"), rc.RetryPolicy.RetryHostPredicate(
        name="envoy.retry_host_predicates.previous_hosts",
        typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
    ).SerializeToString(deterministic=True)),
    _number(_tag(_RETRY, "host_selection_retry_max_attempts", _VARINT), 3),
))

_REDIRECT = rc.RedirectAction.DESCRIPTOR
_D_HOST, _D_PATH = _tag(_REDIRECT, "host_redirect"), _tag(_REDIRECT, "path_redirect")
_D_CODE = _tag(_REDIRECT, "response_code", _VARINT)
_D_PREFIX, _D_SCHEME = _tag(_REDIRECT, "prefix_rewrite"), _tag(_REDIRECT, "scheme_redirect")
_D_PORT, _D_REGEX_REWRITE = _tag(_REDIRECT, "port_redirect", _VARINT), _tag(_REDIRECT, "regex_rewrite")
_REDIRECT_CODES = {code: rc.RedirectAction.RedirectResponseCode.Value(name) for code, name in (
    (301, "MOVED_PERMANENTLY"), (302, "FOUND"), (303, "SEE_OTHER"), (307, "TEMPORARY_REDIRECT"),
    (308, "PERMANENT_REDIRECT"))}
_DIRECT_500 = _ld(_R_DIRECT, _number(_tag(rc.DirectResponseAction.DESCRIPTOR, "status", _VARINT), 500))

_OPTION = base_pb2.HeaderValueOption.DESCRIPTOR
_O_HEADER, _O_ACTION = _tag(_OPTION, "header"), _tag(_OPTION, "append_action", _VARINT)
_HV_KEY, _HV_VALUE = _tag(base_pb2.HeaderValue.DESCRIPTOR, "key"), _tag(base_pb2.HeaderValue.DESCRIPTOR, "value")
_SET = base_pb2.HeaderValueOption.HeaderAppendAction.Value("OVERWRITE_IF_EXISTS_OR_ADD")
_ADD = base_pb2.HeaderValueOption.HeaderAppendAction.Value("APPEND_IF_EXISTS_OR_ADD")

_VHOST = rc.VirtualHost.DESCRIPTOR
_V_NAME, _V_DOMAINS, _V_ROUTES = _tag(_VHOST, "name"), _tag(_VHOST, "domains"), _tag(_VHOST, "routes")
_TABLE = route_pb2.RouteConfiguration.DESCRIPTOR
_T_NAME, _T_VHOSTS = _tag(_TABLE, "name"), _tag(_TABLE, "virtual_hosts")
# Backends that do not resolve have no cluster on purpose (their share answers 500), so Envoy must not
# refuse the table for naming them; explicit, since inline route configs default to checking.
_T_NO_VALIDATION = _ld(_tag(_TABLE, "validate_clusters"), b"")  # a BoolValue holding false
# A backendRef's header filters (on its weighted cluster) apply after the rule's (on the route), as the
# spec orders them, so where both set a header the backend's value wins; Envoy's default is the reverse.
_T_MOST_SPECIFIC_WINS = _number(_tag(_TABLE, "most_specific_header_mutations_wins", _VARINT), 1)

@lru_cache(maxsize=1024)
def duration_fields(value: str) -> tuple[int, int]:
    """A Gateway API duration (``1h2m3s400ms``) as a ``google.protobuf.Duration``'s seconds and nanos."""
    return seconds_and_nanos(value)


def _duration(seconds: int, nanos: int) -> bytes:
    return _number(b"\x08", seconds) + _number(b"\x10", nanos)  # Duration.seconds = 1, .nanos = 2 (varints)


@lru_cache(maxsize=1024)
def _gateway_duration(value: str) -> bytes:
    return _duration(*duration_fields(value))


@lru_cache(maxsize=65536)
def _string_matcher(tag: bytes, name: str, value: str, regex: bool) -> bytes:
    """A HeaderMatcher or QueryParameterMatcher (``tag`` says which) with its StringMatcher."""
    pattern = _ld(_STRING_REGEX, _text(_REGEX, value)) if regex else _ld(_STRING_EXACT, value.encode())
    string_tag = _HEADER_STRING if tag == _M_HEADERS else _QUERY_STRING
    name_tag = _HEADER_NAME if tag == _M_HEADERS else _QUERY_NAME
    return _ld(tag, _text(name_tag, name) + _ld(string_tag, pattern))


def _match(match: ir.MatchIR) -> bytes:
    """A RouteMatch, as a ``Route.match`` field. Run once per route: the length prefixes are inlined."""
    path_type, path = match.path_type, match.path
    head = tail = b""
    if path_type == "PathPrefix":
        trimmed = path.rstrip("/").encode()
        # Gateway API prefixes match whole path segments: /foo matches /foo and /foo/bar, not /foobar.
        if trimmed:
            size = len(trimmed)
            tail = _M_SEPARATED_PREFIX + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + trimmed
        else:
            head = _PREFIX_ROOT
    elif path_type == "Exact":
        encoded = path.encode()
        size = len(encoded)
        head = _M_PATH + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + encoded
    else:
        tail = _ld(_M_REGEX, _text(_REGEX, path))
    if match.headers or match.method or match.query_params:
        parts = [head]
        parts += [_string_matcher(_M_HEADERS, h.name, h.value, h.regex) for h in match.headers]
        if match.method:
            parts.append(_string_matcher(_M_HEADERS, ":method", match.method, False))
        parts += [_string_matcher(_M_QUERY, q.name, q.value, q.regex) for q in match.query_params]
        parts.append(tail)
        body = b"".join(parts)
    else:
        body = head + tail
    size = len(body)
    return _R_MATCH + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + body


@lru_cache(maxsize=65536)
def _header_option(tag: bytes, key: str, value: str, append_action: int) -> bytes:
    # Envoy reads "%" in added header values as a formatter command; Gateway API values are literal.
    header = _text(_HV_KEY, key) + _text(_HV_VALUE, value.replace("%", "%%"))
    return _ld(tag, _ld(_O_HEADER, header) + _number(_O_ACTION, append_action))


def _header_options(tag: bytes, ops: ir.HeaderOpsIR) -> list[bytes]:
    options = [_header_option(tag, k, v, _SET) for k, v in ops.set]
    options += [_header_option(tag, k, v, _ADD) for k, v in ops.add]
    return options


_PUNCTUATION = frozenset(string.punctuation) - {"/", "_", "%"}


def regex_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching it literally (RE2 takes a backslash before any ASCII punctuation)."""
    return "".join(["\\" + c if c in _PUNCTUATION else c for c in text])


@lru_cache(maxsize=4096)
def prefix_replacement(path_type: str, path: str, replacement: str) -> tuple[str | None, str | None]:
    """A ReplacePrefixMatch as Envoy's ``prefix_rewrite`` or, as a ``regex_rewrite`` pattern whose
    substitution is ``/``, the one it cannot express; (None, None) when the path stays as it is.

    Gateway API replaces whole path segments and ignores a trailing ``/`` of both the prefix and the
    replacement: with prefix ``/foo``, ``/foo/bar`` becomes ``/xyz/bar`` for ``/xyz`` or ``/xyz/`` and
    ``/bar`` for ``/`` or nothing, ``/foo`` becomes ``/xyz`` or ``/``, ``/foo/`` becomes ``/xyz/`` or
    ``/``. Envoy replaces the matched characters only, which is right for a replacement that keeps a
    segment (the rest of the path starts with ``/`` or is empty); when the replacement is the root, the
    prefix and every ``/`` after it give way to one ``/`` (RE2 strips a literal prefix from its program,
    so the pattern's size does not grow with the path). A prefix of ``/`` matches every path: the
    replacement then comes before it, the path's own ``/`` kept as the separator."""
    if path_type != "PathPrefix":  # the semantics never pair the two (the CRD forbids it)
        return replacement or None, None
    prefix, kept = path.rstrip("/"), replacement.rstrip("/")
    if not prefix:
        return (kept + "/", None) if kept else (None, None)
    if kept:
        return kept, None
    return None, f"^{regex_literal(prefix)}/*"


_WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def redirect_port(redirect: ir.RedirectIR, listener_port: int, listener_protocol: str) -> int:
    """The ``port_redirect`` a redirect needs on a listener, 0 for none.

    Without a port, the spec's port is the scheme's well-known one when the redirect sets a scheme, else
    the listener's. Envoy drops the Host header's port when it replaces the host, and keeps it otherwise
    (when the scheme changes, unless it is the old scheme's default), so the port is written whenever
    it is not the default of the Location's scheme, and when the scheme changes without a new host:
    the Location then never carries a port the spec does not give, and leaves out 80 and 443 where
    they go without saying."""
    scheme = redirect.scheme or ("https" if listener_protocol == "HTTPS" else "http")
    port = redirect.port or (_WELL_KNOWN_PORTS.get(redirect.scheme, listener_port) if redirect.scheme
                             else listener_port)
    if port == _WELL_KNOWN_PORTS.get(scheme) and (redirect.hostname or not redirect.scheme):
        return 0
    return port


def _redirect(redirect: ir.RedirectIR, match: ir.MatchIR, port: int) -> bytes:
    path = redirect.path
    full_path = path.full_path if path is not None else None
    prefix = pattern = None
    if path is not None and full_path is None and path.prefix is not None:
        prefix, pattern = prefix_replacement(match.path_type, match.path, path.prefix)
    return b"".join((
        _text(_D_HOST, redirect.hostname or ""),
        _ld(_D_PATH, full_path.encode()) if full_path is not None else b"",
        _number(_D_CODE, _REDIRECT_CODES.get(redirect.status_code, _REDIRECT_CODES[302])),
        _ld(_D_PREFIX, prefix.encode()) if prefix is not None else b"",
        _ld(_D_SCHEME, redirect.scheme.encode()) if redirect.scheme else b"",
        _number(_D_PORT, port),
        _ld(_D_REGEX_REWRITE, _root_substitution(pattern)) if pattern is not None else b"",
    ))


@lru_cache(maxsize=4096)
def _root_substitution(pattern: str) -> bytes:
    return _ld(_tag(_SUBSTITUTE, "pattern"), _text(_REGEX, pattern)) + _text(_SUBSTITUTION, "/")


@lru_cache(maxsize=65536)
def _cluster_weight(name: str, weight: int, headers: ir.BackendHeadersIR = ir.NO_BACKEND_HEADERS) -> bytes:
    """A weighted-cluster entry, with the backendRef's own header filters if it has any."""
    entry = _text(_CW_NAME, name) + _ld(_CW_WEIGHT, _number(_WRAPPER_VALUE, weight))
    if headers is ir.NO_BACKEND_HEADERS:
        return _ld(_WEIGHTED_CLUSTERS, entry)
    request, response = headers
    return _ld(_WEIGHTED_CLUSTERS, b"".join((
        entry, *_header_options(_CW_REQUEST_ADD, request), *_header_options(_CW_RESPONSE_ADD, response),
        *[_text(_CW_RESPONSE_REMOVE, name) for name in response.remove],
        *[_text(_CW_REQUEST_REMOVE, name) for name in request.remove],
    )))


@lru_cache(maxsize=65536)
def _cluster(name: str) -> bytes:
    return _ld(_A_CLUSTER, name.encode())


def envoy_share(numerator: int, denominator: int) -> tuple[int, int]:
    """A share of requests as Envoy's FractionalPercent: (numerator, denominator enum value) over 100,
    10,000 or 1,000,000, exact where one of them holds it, else the nearest millionth (Envoy's finest)."""
    for base, value in _DENOMINATORS:
        if numerator * base % denominator == 0:
            return numerator * base // denominator, value
    return (2 * numerator * 1_000_000 + denominator) // (2 * denominator), _DENOMINATORS[-1][1]


@lru_cache(maxsize=65536)
def _mirror(name: str, share: tuple[int, int] = (1, 1)) -> bytes:
    """A mirror policy; one that gets less than every request carries its share as a runtime fraction
    (under no runtime key: the default is the share)."""
    numerator, denominator = share
    if numerator == denominator:
        return _ld(_A_MIRRORS, _text(_MIRROR_CLUSTER, name))
    envoy_numerator, envoy_denominator = envoy_share(numerator, denominator)
    fraction = _number(_PERCENT_NUMERATOR, envoy_numerator) + _number(_PERCENT_DENOMINATOR, envoy_denominator)
    return _ld(_A_MIRRORS, _text(_MIRROR_CLUSTER, name) + _ld(_MIRROR_FRACTION, _ld(_FRACTION_DEFAULT, fraction)))


@lru_cache(maxsize=4096)
def _retry_policy(backend_timeout: str | None, codes: tuple[int, ...], attempts: int | None, backoff: str | None,
                  failover: ir.RetryIR | None) -> bytes:
    """The route's retry policy field, or nothing: the rule's Gateway API retry and backend timeout, merged
    with the failover retries of its ServiceImport backends (which also bound each try, so that a
    blackholed host costs one try)."""
    retry_on = ""
    num_retries: int | None = None
    per_try = duration_fields(backend_timeout) if backend_timeout else None
    if codes or attempts is not None:
        retry_on = "retriable-status-codes" if codes else "5xx"
        num_retries = attempts if attempts is not None else 1
    if failover is not None:
        tokens = list(failover.retry_on)
        tokens += [t for t in retry_on.split(",") if t and t not in tokens]
        retry_on = ",".join(tokens)
        num_retries = max(failover.attempts, num_retries or 0)
        if per_try is None:
            per_try = (failover.per_try_timeout_ms // 1000, failover.per_try_timeout_ms % 1000 * 1_000_000)
    if not retry_on and per_try is None:
        return b""
    packed_codes = b"".join(varint(code) for code in codes)
    return _ld(_A_RETRY, b"".join((
        _text(_Y_ON, retry_on),
        _ld(_Y_NUM, _number(_WRAPPER_VALUE, num_retries)) if num_retries is not None else b"",
        _ld(_Y_PER_TRY, _duration(*per_try)) if per_try is not None else b"",
        _Y_MOVE_ON if failover is not None else b"",
        _ld(_Y_CODES, packed_codes) if packed_codes else b"",
        _ld(_Y_BACKOFF, _ld(_Y_BASE_INTERVAL, _gateway_duration(backoff)))
        if backoff and (codes or attempts is not None) else b"",
    )))


def _action(route: ir.RouteIR, weighted: list[ir.BackendIR], valid: int,
            headers: list[ir.BackendHeadersIR] | None = None) -> bytes:
    """``headers``: the weighted backends' own header filters, when any backend has some; then even a single
    backend is a weighted cluster, the one place Envoy keeps headers for a backend."""
    if headers is not None:
        parts = [_ld(_A_WEIGHTED, b"".join([_cluster_weight(b.name, b.weight, h)
                                            for b, h in zip(weighted, headers, strict=True)]))]
    elif len(weighted) == 1:
        parts = [_cluster(weighted[0].name)]
    else:
        parts = [_ld(_A_WEIGHTED, b"".join([_cluster_weight(b.name, b.weight) for b in weighted]))]
    rewrite = route.rewrite_path
    prefix = pattern = None
    if rewrite is not None and rewrite.full_path is None and rewrite.prefix is not None:
        prefix, pattern = prefix_replacement(route.match.path_type, route.match.path, rewrite.prefix)
        if prefix is not None:
            parts.append(_ld(_A_PREFIX_REWRITE, prefix.encode()))
    if route.rewrite_hostname:
        parts.append(_ld(_A_HOST_REWRITE, route.rewrite_hostname.encode()))
    if route.timeout:
        parts.append(_ld(_A_TIMEOUT, _gateway_duration(route.timeout)))
    if route.backend_timeout or route.retry_codes or route.retry_attempts is not None \
            or route.failover_retry is not None:
        parts.append(_retry_policy(route.backend_timeout, route.retry_codes, route.retry_attempts,
                                   route.retry_backoff, route.failover_retry))
    if valid < len(weighted):
        parts.append(_A_NOT_FOUND_500)
    if route.mirror_fractions:
        parts += [_mirror(m.name, share) for m, share in zip(route.mirrors, route.mirror_fractions, strict=True)]
    else:
        parts += [_mirror(m.name) for m in route.mirrors]
    if rewrite is not None and rewrite.full_path is not None:
        parts.append(_ld(_A_REGEX_REWRITE, _ANY_PATH + _text(_SUBSTITUTION, rewrite.full_path)))
    elif pattern is not None:
        parts.append(_ld(_A_REGEX_REWRITE, _root_substitution(pattern)))
    return b"".join(parts)


@lru_cache(maxsize=4096)
def _cors(cors: ir.CorsIR) -> bytes:
    """The route's CORS policy, as the CORS filter's entry of ``typed_per_filter_config``. Envoy answers
    a wildcard of methods or headers with what the preflight asks for, as the spec wants with credentials,
    and echoes an allowed origin. It applies the policy to requests it forwards, so a rule that redirects
    or answers 500 itself gets no CORS headers."""
    origins = [_ld(_C_ORIGIN, _ld(_STRING_REGEX, _text(_REGEX, o.value)) if o.regex
                   else _ld(_STRING_EXACT, o.value.encode())) for o in cors.origins]
    policy = b"".join((
        *origins,
        _text(_C_METHODS, ", ".join(cors.allow_methods)),
        _text(_C_HEADERS, ", ".join(cors.allow_headers)),
        _text(_C_EXPOSE, ", ".join(cors.expose_headers)),
        _text(_C_MAX_AGE, str(cors.max_age)) if cors.max_age is not None else b"",
        _ld(_C_CREDENTIALS, _number(_WRAPPER_VALUE, 1)) if cors.allow_credentials else b"",
        _C_ANSWER_OTHER_PREFLIGHTS,
    ))
    packed = _C_TYPE_URL + _ld(_ANY_VALUE, policy)
    return _ld(_R_FILTER_CONFIG, _text(_FC_KEY, CORS_FILTER) + _ld(_FC_VALUE, packed))


def encode_route(route: ir.RouteIR, listener_port: int, listener_protocol: str) -> bytes:
    """One Envoy ``Route``, serialised, for a listener (only a redirect depends on it)."""
    parts = [_match(route.match)]
    if route.redirect is not None:
        port = redirect_port(route.redirect, listener_port, listener_protocol)
        parts.append(_ld(_R_REDIRECT, _redirect(route.redirect, route.match, port)))
    else:
        backends = route.backends
        headers = None
        if route.backend_headers:
            pairs = [(b, h) for b, h in zip(backends, route.backend_headers, strict=True) if b.weight > 0]
            weighted = [b for b, _ in pairs]
            valid = sum(1 for b in weighted if b.valid)
            if any(h != ir.NO_BACKEND_HEADERS for _, h in pairs):
                headers = [h for _, h in pairs]
        elif len(backends) == 1:  # the common case
            weighted = [backends[0]] if backends[0].weight > 0 else []
            valid = 1 if weighted and backends[0].valid else 0
        else:
            weighted = [b for b in backends if b.weight > 0]
            valid = sum(1 for b in weighted if b.valid)
        # No backend at all, or only invalid ones: the spec's answer is 500.
        parts.append(_ld(_R_ACTION, _action(route, weighted, valid, headers)) if valid else _DIRECT_500)
    request, response = route.request_headers, route.response_headers
    if request is not ir.NO_HEADER_OPS:
        parts += _header_options(_R_REQUEST_ADD, request)
    if response is not ir.NO_HEADER_OPS:
        parts += _header_options(_R_RESPONSE_ADD, response)
        parts += [_text(_R_RESPONSE_REMOVE, name) for name in response.remove]
    if request is not ir.NO_HEADER_OPS:
        parts += [_text(_R_REQUEST_REMOVE, name) for name in request.remove]
    if route.cors is not None:
        parts.append(_cors(route.cors))
    name = route.name.encode()
    size = len(name)
    if size:
        parts.append(_R_NAME + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + name)
    return b"".join(parts)


def route_field(route: ir.RouteIR, listener_port: int, listener_protocol: str) -> bytes:
    """One route as an entry of ``VirtualHost.routes`` of a listener."""
    encoded = encode_route(route, listener_port, listener_protocol)
    size = len(encoded)
    return _V_ROUTES + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + encoded


def domains(hostname: str) -> list[str]:
    """The Host header may carry a port; Gateway API hostnames never do."""
    return ["*"] if hostname == "*" else [hostname, f"{hostname}:*"]


def virtual_host_fields(vhost: ir.VirtualHostIR) -> list[bytes]:
    """A virtual host's name and domains as encoded fields; its routes (:func:`route_field`) follow them."""
    return [_text(_V_NAME, vhost.name), *(_ld(_V_DOMAINS, d.encode()) for d in domains(vhost.hostname))]


def virtual_host_field(encoded_fields: list[bytes]) -> bytes:
    """A virtual host, from its encoded fields, as an entry of ``RouteConfiguration.virtual_hosts``."""
    return _ld(_T_VHOSTS, b"".join(encoded_fields))


_MISDIRECTED_ROUTE = _ld(_V_ROUTES, _ld(_R_MATCH, _PREFIX_ROOT) + _ld(
    _R_DIRECT, _number(_tag(rc.DirectResponseAction.DESCRIPTOR, "status", _VARINT), 421)))


@lru_cache(maxsize=1024)
def misdirected_virtual_host(port_name: str, hostname: str) -> bytes:
    """A virtual host that answers every request 421 Misdirected Request: another HTTPS listener of the port
    serves ``hostname``, so the client retries on a connection whose SNI chooses that listener."""
    return virtual_host_field([_text(_V_NAME, f"{port_name}/misdirected/{hostname}"),
                               *(_ld(_V_DOMAINS, d.encode()) for d in domains(hostname)), _MISDIRECTED_ROUTE])


def listener_tables(port: ir.HTTPListenerIR, encoded: Sequence[bytes]) -> list[tuple[str, tuple[bytes, ...]]]:
    """(name, encoded virtual hosts) of each route table of a port, from the encoded ``port.virtual_hosts``:
    the port's one table, or one per HTTPS listener (its own virtual hosts, then a 421 for each other's)."""
    if not port.route_tables:
        return [(port.name, tuple(encoded))]
    by_hostname = {vhost.hostname: field for vhost, field in zip(port.virtual_hosts, encoded, strict=True)}
    return [(table.name, (*(by_hostname[h] for h in table.hostnames),
                          *(misdirected_virtual_host(port.name, h) for h in table.misdirected)))
            for table in port.route_tables]


def route_table(name: str, encoded_virtual_hosts: tuple[bytes, ...]) -> bytes:
    """A serialised ``RouteConfiguration`` from its virtual hosts (:func:`virtual_host_field`)."""
    return b"".join((_text(_T_NAME, name), *encoded_virtual_hosts, _T_NO_VALIDATION, _T_MOST_SPECIFIC_WINS))


def route_clusters(route: ir.RouteIR) -> list[ir.BackendIR]:
    """The backends of a route that get an Envoy cluster: valid ones, unless the route redirects."""
    if route.redirect is not None:
        return []
    clusters = [b for b in route.backends if b.valid]
    if route.mirrors:
        clusters += [b for b in route.mirrors if b.valid]
    return clusters
