"""Cross serving (GEP-1016): an HTTPRoute and a GRPCRoute never share a hostname on a listener.

The golden case testdata/routes/cross-serving holds the statuses of each rule; these tests check what
Envoy serves, that the conflict follows the routes' changes (incrementally as from scratch), and that the
hostname index agrees with the spec's intersection on every pair of hostnames.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.semantics.gateway.crossserving import Claim, Refusal, refusals
from mcgw.semantics.gateway.hostnames import intersection
from tests.mcgw.manifests import V1, public_gateway

GATEWAY = ("infra", "public")


def _route(kind: str, name: str, created: str, hostnames: list[str]) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": kind,
            "metadata": {"name": name, "namespace": "infra", "generation": 1, "creationTimestamp": created},
            "spec": {"parentRefs": [{"name": "public"}], "hostnames": hostnames,
                     "rules": [{"backendRefs": [{"name": "echo", "port": 8080}]}]}}


def _objects(*routes: dict[str, Any]) -> list[AnyObject]:
    documents = [
        *public_gateway(),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "infra"},
         "spec": {"ports": [{"name": "http", "port": 8080}]}},
        *routes,
    ]
    return [parse_object(document, "test") for document in documents]


def _served(output: ClusterOutput) -> dict[str, list[str]]:
    """Route names by virtual host hostname, on the Gateway's one port."""
    (gateway,) = output.gateways
    (listener,) = gateway.http
    return {vhost.hostname: [route.name for route in vhost.routes] for vhost in listener.virtual_hosts}


def _accepted(output: ClusterOutput, kind: str, name: str) -> tuple[str, str]:
    (parent,) = output.statuses()[kind][f"infra/{name}"]["parents"]
    condition = next(c for c in parent["conditions"] if c["type"] == "Accepted")
    return condition["status"], condition["reason"]


WEB = _route("HTTPRoute", "web", "2026-01-01T00:00:00Z", ["www.example.com"])
RPC = _route("GRPCRoute", "rpc", "2026-01-02T00:00:00Z", ["*.example.com"])


def test_the_newer_route_serves_nothing_on_the_shared_listener() -> None:
    output = translate_cluster("east", _objects(WEB, RPC))
    assert _accepted(output, "HTTPRoute", "web") == ("True", "Accepted")
    assert _accepted(output, "GRPCRoute", "rpc") == ("False", "HostnameConflict")
    assert _served(output) == {"www.example.com": ["infra/web/rule/0/match/0"]}
    assert output.statuses()["Gateway"]["infra/public"]["listeners"][0]["attachedRoutes"] == 1


def test_deleting_the_older_route_lets_the_other_kind_in_incrementally() -> None:
    translator = ClusterTranslator("east")
    translator.translate(_objects(WEB, RPC))
    output = translator.translate(_objects(RPC))
    assert output.statuses() == translate_cluster("east", _objects(RPC)).statuses()
    assert _accepted(output, "GRPCRoute", "rpc") == ("True", "Accepted")
    assert _served(output) == {"*.example.com": ["grpcroute/infra/rpc/rule/0/match/0"]}


def test_an_older_route_of_the_other_kind_takes_the_hostname_over_incrementally() -> None:
    translator = ClusterTranslator("east")
    translator.translate(_objects(WEB))
    older = _route("GRPCRoute", "rpc", "2025-12-01T00:00:00Z", ["*.example.com"])
    output = translator.translate(_objects(WEB, older))
    assert output.statuses() == translate_cluster("east", _objects(WEB, older)).statuses()
    assert _accepted(output, "HTTPRoute", "web") == ("False", "HostnameConflict")
    assert _served(output) == {"*.example.com": ["grpcroute/infra/rpc/rule/0/match/0"]}


def test_hostnames_that_never_meet_share_the_listener() -> None:
    other = _route("GRPCRoute", "rpc", "2026-01-02T00:00:00Z", ["example.com", "*.example.org"])
    output = translate_cluster("east", _objects(WEB, other))
    assert _accepted(output, "GRPCRoute", "rpc") == ("True", "Accepted")
    assert set(_served(output)) == {"www.example.com", "example.com", "*.example.org"}


def test_routes_of_one_kind_never_refuse_each_other() -> None:
    second = _route("HTTPRoute", "web2", "2026-01-02T00:00:00Z", ["www.example.com"])
    output = translate_cluster("east", _objects(WEB, second))
    assert _accepted(output, "HTTPRoute", "web2") == ("True", "Accepted")


HOSTNAMES = st.sampled_from(["*", "example.com", "a.example.com", "b.a.example.com", "*.example.com",
                             "*.a.example.com", "*.com", "example.org", "*.example.org", "com"])


def _meet(first: str, second: str) -> bool:
    """The spec's intersection of two route hostnames, ``*`` (a route without hostnames) meeting all."""
    return "*" in (first, second) or intersection(first, second) is not None


@given(kept=st.lists(HOSTNAMES, min_size=1, max_size=4, unique=True), asked=st.lists(HOSTNAMES, min_size=1,
                                                                                     max_size=3, unique=True))
def test_a_route_is_refused_exactly_when_a_hostname_meets_an_older_one_of_the_other_kind(
        kept: list[str], asked: list[str]) -> None:
    older = Claim(("2026-01-01T00:00:00Z", "infra", "older", "HTTPRoute"), ("HTTPRoute", "infra", "older"),
                  tuple(kept))
    newer = Claim(("2026-01-02T00:00:00Z", "infra", "newer", "GRPCRoute"), ("GRPCRoute", "infra", "newer"),
                  tuple(asked))
    refused = refusals([newer, older])
    expected = any(_meet(a, k) for a in asked for k in kept)
    assert (("GRPCRoute", "infra", "newer") in refused) == expected
    assert ("HTTPRoute", "infra", "older") not in refused
    if expected:
        refusal = refused[("GRPCRoute", "infra", "newer")]
        assert refusal == Refusal(("HTTPRoute", "infra", "older"), refusal.hostname)
        assert refusal.hostname in kept
        assert any(_meet(a, refusal.hostname) for a in asked)
