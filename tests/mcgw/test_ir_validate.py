"""``ir.validate``: each invariant the translator relies on, broken once, is named in the error."""

from __future__ import annotations

import pytest

from mcgw import ir

ENDPOINT = ir.EndpointIR("198.18.1.10", 8080, "HEALTHY")
WEB = ir.BackendIR("service/shop/web/80", 1, True, "Service", (ir.LocalityIR("east", 0, (ENDPOINT,)),))
INVALID = ir.BackendIR("shop/web/rule/0/invalid-backend/1", 1, False, "Invalid")
ROUTE = ir.RouteIR("shop/web/rule/0/match/0", ir.MatchIR("PathPrefix", "/"), (WEB, INVALID))
VHOST = ir.VirtualHostIR("infra/gw/80/*", "*", (ROUTE,))
HTTP = ir.HTTPListenerIR("infra/gw/80", 80, "HTTP", (VHOST,))
CHAIN = ir.TlsChainIR(("a.example.com",), ("secret/infra/a",))
HTTPS = ir.HTTPListenerIR("infra/gw/443", 443, "HTTPS", (), (CHAIN,))
SECRET = ir.SecretIR("secret/infra/a", "CERT", "KEY")
GATEWAY = ir.GatewayIR("east", "infra", "gw", "0.0.0.0", (HTTP, HTTPS), secrets=(SECRET,))


# Two HTTPS listeners sharing port 8443, each with its own route table.
A_VHOST = ir.VirtualHostIR("infra/gw/8443/a.example.com", "a.example.com", ())
B_VHOST = ir.VirtualHostIR("infra/gw/8443/*.example.com", "*.example.com", ())
SHARED = ir.HTTPListenerIR(
    "infra/gw/8443", 8443, "HTTPS", (B_VHOST, A_VHOST),
    (CHAIN._replace(route_table="infra/gw/8443/a"),
     CHAIN._replace(server_names=("*.example.com",), route_table="infra/gw/8443/b")),
    route_tables=(ir.RouteTableIR("infra/gw/8443/a", ("a.example.com",), ("*.example.com",)),
     ir.RouteTableIR("infra/gw/8443/b", ("*.example.com",), ("a.example.com",))))
SHARED_GATEWAY = GATEWAY._replace(http=(HTTP, HTTPS, SHARED))
A_TABLE, B_TABLE = SHARED.route_tables


def _tables(*tables: ir.RouteTableIR) -> ir.GatewayIR:
    return SHARED_GATEWAY._replace(http=(HTTP, HTTPS, SHARED._replace(route_tables=tables)))


def _with_route(route: ir.RouteIR) -> ir.GatewayIR:
    return GATEWAY._replace(http=(HTTP._replace(virtual_hosts=(VHOST._replace(routes=(route,)),)), HTTPS))


def test_a_well_formed_gateway_passes() -> None:
    ir.validate(GATEWAY)
    ir.validate(SHARED_GATEWAY)
    ir.validate(GATEWAY._replace(
        tls_passthrough=(ir.TLSPassthroughListenerIR("infra/gw/8443", 8443, (
            ir.TLSRouteIR("db/tls/0", ("db.example.com",), (WEB,)), ir.TLSRouteIR("db/tls/1", (), (WEB,)))),),
        tcp=(ir.TCPListenerIR("infra/gw/5432", 5432, (WEB,)),),
        udp=(ir.UDPListenerIR("infra/gw/udp/5432", 5432, (WEB,)),)))


@pytest.mark.parametrize(("gateway", "problem"), [
    (GATEWAY._replace(http=(HTTP, HTTP._replace(port=81))), "listener name infra/gw/80 repeated"),
    (GATEWAY._replace(http=(HTTP, HTTP._replace(name="infra/gw/80b"))), "port 80 has more than one TCP listener"),
    (GATEWAY._replace(tcp=(ir.TCPListenerIR("infra/gw/tcp", 443, (WEB,)),)), "port 443 has more than one TCP"),
    (GATEWAY._replace(tls_passthrough=(ir.TLSPassthroughListenerIR("infra/gw/tls", 80, ()),)),
     "port 80 has more than one TCP listener"),
    (GATEWAY._replace(udp=(ir.UDPListenerIR("u1", 53, ()), ir.UDPListenerIR("u2", 53, ()))),
     "port 53 has more than one UDP listener"),
    (GATEWAY._replace(http=(HTTP._replace(port=70000),)), "port 70000 out of range"),
    (GATEWAY._replace(http=(HTTP._replace(tls=(CHAIN,)),)), "HTTP, yet it has TLS chains"),
    (GATEWAY._replace(secrets=()), "certificate secret/infra/a named by a TLS chain but not among the secrets"),
    (GATEWAY._replace(http=(HTTP,)), "secret secret/infra/a named by no TLS chain"),
    (GATEWAY._replace(secrets=(SECRET, SECRET)), "secret secret/infra/a repeated"),
    (GATEWAY._replace(secrets=(SECRET._replace(private_key=""),)), "no certificate chain or no private key"),
    (GATEWAY._replace(http=(HTTP, HTTPS._replace(tls=(CHAIN._replace(certificates=("secret/infra/a",) * 2),)))),
     "names certificate 'secret/infra/a' twice"),
    (GATEWAY._replace(http=(HTTPS._replace(tls=()),)), "HTTPS without a TLS chain"),
    (_tables(A_TABLE), "route tables ['infra/gw/8443/a'] are not the TLS chains'"),
    (_tables(A_TABLE, A_TABLE), "route table infra/gw/8443/a repeated"),
    (_tables(A_TABLE, B_TABLE._replace(hostnames=("a.example.com",), misdirected=())),
     "hostname a.example.com in more than one route table"),
    (_tables(A_TABLE, B_TABLE._replace(hostnames=("c.example.com",))),
     "serves hostname c.example.com, which has no virtual host"),
    (_tables(A_TABLE._replace(misdirected=("a.example.com",)), B_TABLE),
     "route table infra/gw/8443/a both serves a.example.com and answers 421 for it"),
    (_tables(A_TABLE._replace(misdirected=("*", "*")), B_TABLE), "answers 421 for * twice"),
    (_tables(), "a TLS chain names route table 'infra/gw/8443/a', but the port has one table"),
    (GATEWAY._replace(http=(HTTPS._replace(tls=(CHAIN._replace(certificates=()),)),)),
     "a TLS chain without certificates"),
    (GATEWAY._replace(http=(HTTPS._replace(tls=(CHAIN, CHAIN._replace(server_names=("b.example.com",
                                                                                    "a.example.com")))),)),
     "SNI a.example.com chooses more than one TLS chain"),
    (GATEWAY._replace(http=(HTTP._replace(virtual_hosts=(VHOST, VHOST._replace(hostname="a.example.com"))),)),
     "virtual host name infra/gw/80/* repeated"),
    (GATEWAY._replace(http=(HTTP._replace(virtual_hosts=(VHOST, VHOST._replace(name="other"))),)),
     "hostname * in more than one virtual host"),
    (GATEWAY._replace(http=(HTTP._replace(virtual_hosts=(VHOST._replace(routes=(ROUTE, ROUTE)),)),)),
     "route name shop/web/rule/0/match/0 repeated"),
    (_with_route(ROUTE._replace(backends=(WEB._replace(kind="Invalid"),))), "a valid backend needs a cluster name"),
    (_with_route(ROUTE._replace(backends=(WEB._replace(name=""),))), "a valid backend needs a cluster name"),
    (_with_route(ROUTE._replace(mirrors=(INVALID._replace(kind="Service"),))), "must be of kind Invalid"),
    (_with_route(ROUTE._replace(backends=(INVALID._replace(localities=WEB.localities),))), "must be of kind Invalid"),
    (_with_route(ROUTE._replace(backends=(WEB._replace(weight=-1),))), "negative weight"),
    (_with_route(ROUTE._replace(backends=(WEB._replace(failover=ir.FailoverIR()),))),
     "only ServiceImport backends fail over"),
    (_with_route(ROUTE._replace(backends=(WEB._replace(localities=(ir.LocalityIR("east", 1, (ENDPOINT,)),)),))),
     "has priorities [1], not contiguous from 0"),
    (_with_route(ROUTE._replace(backends=(WEB._replace(kind="ServiceImport", localities=(
        ir.LocalityIR("east", 0, (ENDPOINT,)), ir.LocalityIR("west", 2, (ENDPOINT,)))),))),
     "has priorities [0, 2], not contiguous from 0"),
    (_with_route(ROUTE._replace(backends=(WEB, WEB._replace(weight=2, localities=())))),
     "differs from another backend of that cluster"),
    (GATEWAY._replace(tls_passthrough=(ir.TLSPassthroughListenerIR("infra/gw/8443", 8443, (
        ir.TLSRouteIR("r", ("x.example.com",), (WEB,)), ir.TLSRouteIR("r", ("x.example.com",), (WEB,)))),)),
     "route name r repeated"),
    (GATEWAY._replace(tls_passthrough=(ir.TLSPassthroughListenerIR("infra/gw/8443", 8443, (
        ir.TLSRouteIR("r1", (), (WEB,)), ir.TLSRouteIR("r2", (), (WEB,)))),)),
     "SNI *any* chooses more than one TLS route"),
    (GATEWAY._replace(tcp=(ir.TCPListenerIR("infra/gw/5432", 5432, (WEB._replace(name=""),)),)),
     "listener infra/gw/5432: a valid backend needs a cluster name"),
])
def test_each_broken_invariant_is_named(gateway: ir.GatewayIR, problem: str) -> None:
    with pytest.raises(ir.InvalidIRError, match="gateway infra/gw: ") as raised:
        ir.validate(gateway)
    assert problem in str(raised.value)


def test_a_backend_of_another_weight_may_share_its_cluster() -> None:
    ir.validate(_with_route(ROUTE._replace(backends=(WEB, WEB._replace(weight=5)))))
