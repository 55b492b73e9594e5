"""UDPRoute: the rule checks of TCPRoute (one rule of backendRefs, no matches), for UDP listeners."""

from __future__ import annotations

from mcgw.objects.model import UDPRoute
from mcgw.semantics.gateway import tcproute
from mcgw.semantics.gateway.routes import RuleCheck


def check_rules(route: UDPRoute) -> RuleCheck:
    return tcproute.check_rules(route)


named_backends = tcproute.named_backends
