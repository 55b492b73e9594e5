"""Routes encoded straight to bytes equal the same routes built with protobuf constructors.

The reference (``route_oracle``) builds each Envoy ``Route`` the obvious way; hypothesis generates route
IR covering every field the encoder writes, and the bytes must equal upb's deterministic serialisation.
"""

from __future__ import annotations

import pytest
import re2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcgw import ir
from mcgw.translate.routes import (
    encode_route,
    envoy_share,
    prefix_replacement,
    redirect_port,
    route_field,
    route_table,
    virtual_host_field,
    virtual_host_fields,
)
from tests.mcgw.route_oracle import route_message

texts = st.text(alphabet="abc/%-.:*é", max_size=8)
names = st.text(alphabet="abcxyz-/", min_size=1, max_size=12)
durations = st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 5000), st.sampled_from(["ms", "s", "m", "h"]))
string_matches = st.builds(ir.StringMatchIR, names, texts, st.booleans())
matches = st.builds(
    ir.MatchIR, st.sampled_from(["Exact", "PathPrefix", "RegularExpression"]),
    st.sampled_from(["/", "/a", "/a/", "/a/b//", "^/v[0-9]+$", ""]) | texts,
    st.lists(string_matches, max_size=3).map(tuple), st.lists(string_matches, max_size=2).map(tuple),
    st.none() | st.sampled_from(["GET", "POST"]))
header_ops = st.just(ir.NO_HEADER_OPS) | st.builds(
    ir.HeaderOpsIR, st.lists(st.tuples(names, texts), max_size=2).map(tuple),
    st.lists(st.tuples(names, texts), max_size=2).map(tuple), st.lists(names, max_size=2).map(tuple))
path_rewrites = st.none() | st.builds(ir.PathRewriteIR, st.none() | texts, st.none() | texts)
redirects = st.none() | st.builds(
    ir.RedirectIR, st.none() | st.sampled_from(["http", "https", ""]), st.none() | texts,
    st.none() | st.integers(0, 65535), path_rewrites, st.sampled_from([301, 302, 303, 307, 308, 399]))
backends = st.builds(ir.BackendIR, names, st.integers(0, 1000), st.booleans(),
                     st.sampled_from(["Service", "ServiceImport", "Invalid"]))
retries = st.none() | st.builds(ir.RetryIR, st.integers(0, 5), st.integers(0, 3000),
                                st.lists(st.sampled_from(["5xx", "reset", "connect-failure",
                                                          "retriable-status-codes"]), max_size=3).map(tuple))
routes = st.builds(
    ir.RouteIR, names, matches, st.lists(backends, max_size=3).map(tuple), header_ops, header_ops, redirects,
    st.none() | texts, path_rewrites, st.lists(backends, max_size=2).map(tuple), st.none() | durations,
    st.none() | durations, st.lists(st.integers(400, 599), max_size=3).map(tuple), st.none() | st.integers(0, 9),
    st.none() | durations, retries, mirror_fractions=st.just(()), backend_headers=st.just(()),
    cors=st.none() | st.builds(
        ir.CorsIR, st.lists(st.builds(ir.OriginMatchIR, texts, st.booleans()), max_size=3).map(tuple),
        st.lists(st.sampled_from(["GET", "PUT", "*"]), max_size=2).map(tuple), st.lists(names, max_size=2).map(tuple),
        st.lists(names, max_size=2).map(tuple), st.none() | st.integers(0, 2**31 - 1), st.booleans()))
shares = st.sampled_from([(20, 100), (25, 50), (1, 3), (0, 7), (1, 2_000_000), (5, 5)]) | st.integers(1, 10**7).flatmap(
    lambda d: st.tuples(st.integers(0, d), st.just(d)))
routes = routes.flatmap(lambda r: st.just(r) | st.lists(shares, min_size=len(r.mirrors), max_size=len(r.mirrors)).map(
    lambda f: r._replace(mirror_fractions=tuple(f))))
backend_headers = st.just(ir.NO_BACKEND_HEADERS) | st.builds(ir.BackendHeadersIR, header_ops, header_ops)
routes = routes.flatmap(lambda r: st.just(r) | st.lists(
    backend_headers, min_size=len(r.backends), max_size=len(r.backends)).map(
    lambda h: r._replace(backend_headers=tuple(h))))


listeners = st.sampled_from([(80, "HTTP"), (8080, "HTTP"), (443, "HTTPS"), (8443, "HTTPS"), (443, "HTTP")])


@settings(max_examples=300, deadline=None)
@given(routes, listeners)
def test_encoded_route_is_the_deterministic_serialisation_of_the_reference_route(
        route: ir.RouteIR, listener: tuple[int, str]) -> None:
    reference = route_message(route, *listener)
    encoded = encode_route(route, *listener)
    assert encoded == reference.SerializeToString(deterministic=True)
    assert route_components_pb2.Route.FromString(encoded) == reference


# Whole tables of generated routes are large by design: the equivalence is what is checked, not the size.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(st.lists(st.lists(routes, max_size=4), min_size=1, max_size=3), st.sampled_from(["*", "a.example.com"]))
def test_encoded_route_table_is_the_deterministic_serialisation_of_the_reference_table(
        routes_per_vhost: list[list[ir.RouteIR]], hostname: str) -> None:
    vhosts = [ir.VirtualHostIR(f"ns/gw/80/{i}", hostname, tuple(vhost_routes))
              for i, vhost_routes in enumerate(routes_per_vhost)]
    encoded = route_table("ns/gw/80", tuple(
        virtual_host_field(virtual_host_fields(v) + [route_field(r, 80, "HTTP") for r in v.routes]) for v in vhosts))
    reference = route_pb2.RouteConfiguration(
        name="ns/gw/80", validate_clusters={"value": False}, most_specific_header_mutations_wins=True, virtual_hosts=[
        {"name": v.name, "domains": ["*"] if hostname == "*" else [hostname, f"{hostname}:*"],
         "routes": [route_message(r) for r in v.routes]} for v in vhosts])
    assert encoded == reference.SerializeToString(deterministic=True)


def _envoy_rewrite(path: str, prefix_path: str, replacement: str) -> str:
    """What Envoy forwards for ``path`` matched by the PathPrefix ``prefix_path``: ``prefix_rewrite``
    replaces the characters the match consumed; ``regex_rewrite`` substitutes its pattern."""
    prefix, pattern = prefix_replacement("PathPrefix", prefix_path, replacement)
    if pattern is not None:
        return re2.sub(pattern, "/", path)
    if prefix is None:
        return path
    matched = prefix_path.rstrip("/") or "/"
    return prefix + path[len(matched):]


# The spec's table (HTTPPathModifier.ReplacePrefixMatch, v1.6.3), and the root prefix.
_REPLACE_PREFIX_TABLE = [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"), ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"), ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"), ("/foo/", "/foo", "/xyz", "/xyz/"), ("/foo/bar", "/foo", "", "/bar"),
    ("/foo/", "/foo", "", "/"), ("/foo", "/foo", "", "/"), ("/foo/", "/foo", "/", "/"), ("/foo", "/foo", "/", "/"),
    ("/strip-prefix/three", "/strip-prefix", "/", "/three"), ("/a.b/c", "/a.b", "/", "/c"),
    ("/bar", "/", "/xyz", "/xyz/bar"), ("/bar", "/", "/", "/bar"), ("/bar", "/", "", "/bar"),
]


@pytest.mark.parametrize(("path", "prefix_path", "replacement", "expected"), _REPLACE_PREFIX_TABLE)
def test_replace_prefix_match_rewrites_whole_segments_as_the_spec_says(
        path: str, prefix_path: str, replacement: str, expected: str) -> None:
    assert _envoy_rewrite(path, prefix_path, replacement) == expected


def _redirect(scheme: str | None, port: int | None, hostname: str | None = "example.org") -> ir.RedirectIR:
    return ir.RedirectIR(scheme, hostname, port, None, 302)


# HTTPRouteRedirectPortAndScheme's cases: (redirect scheme, port), listener, the port_redirect (0: none).
_REDIRECT_PORTS = [
    ((None, None), (80, "HTTP"), 0), ((None, 80), (80, "HTTP"), 0), ((None, 8080), (80, "HTTP"), 8080),
    (("https", None), (80, "HTTP"), 0), (("https", 443), (80, "HTTP"), 0), (("https", 8443), (80, "HTTP"), 8443),
    ((None, None), (8080, "HTTP"), 8080), ((None, 80), (8080, "HTTP"), 0), (("https", None), (8080, "HTTP"), 0),
    ((None, None), (443, "HTTPS"), 0), ((None, 443), (443, "HTTPS"), 0), ((None, 8443), (443, "HTTPS"), 8443),
    (("http", None), (443, "HTTPS"), 0), (("http", 80), (443, "HTTPS"), 0), (("http", 8080), (443, "HTTPS"), 8080),
]


@pytest.mark.parametrize(("redirect", "listener", "expected"), _REDIRECT_PORTS)
def test_redirect_port_follows_the_scheme_else_the_listener(
        redirect: tuple[str | None, int | None], listener: tuple[int, str], expected: int) -> None:
    assert redirect_port(_redirect(*redirect), *listener) == expected


def test_a_scheme_change_without_a_hostname_names_its_port_since_envoy_would_keep_the_requests() -> None:
    assert redirect_port(_redirect("https", None, None), 8080, "HTTP") == 443
    assert redirect_port(_redirect(None, None, None), 8080, "HTTP") == 8080
    assert redirect_port(_redirect(None, None, None), 80, "HTTP") == 0


@pytest.mark.parametrize(("share", "expected"), [
    ((20, 100), (20, 0)), ((25, 50), (50, 0)), ((35, 100), (35, 0)), ((1, 400), (25, 1)), ((1, 3), (333_333, 2)),
    ((2, 3), (666_667, 2)), ((0, 9), (0, 0)), ((1, 2_000_000), (1, 2)),
])
def test_a_mirror_share_takes_envoys_smallest_exact_denominator_else_the_nearest_millionth(
        share: tuple[int, int], expected: tuple[int, int]) -> None:
    assert envoy_share(*share) == expected
