"""Hostname matching between listeners and routes, with the spec's wildcard rules.

``*.example.com`` matches any subdomain (one or more labels) but not ``example.com`` itself; a
missing hostname matches everything.
"""

from __future__ import annotations

from collections.abc import Sequence


def _matches_wildcard(wildcard: str, hostname: str) -> bool:
    suffix = wildcard[1:]  # ".example.com"
    return hostname.endswith(suffix) and len(hostname) > len(suffix)


def intersection(listener: str | None, route: str) -> str | None:
    """The hostname that both a listener and a route hostname accept, or None if they never meet.

    The more specific of the two is returned, since that is what the virtual host must match.
    """
    if listener is None:
        return route
    if listener == route:
        return route
    if listener.startswith("*.") and route.startswith("*."):
        if _matches_wildcard(listener, route[2:]) or route == listener:
            return route
        if _matches_wildcard(route, listener[2:]):
            return listener
        return None
    if listener.startswith("*."):
        return route if _matches_wildcard(listener, route) else None
    if route.startswith("*."):
        return listener if _matches_wildcard(route, listener) else None
    return None


def listener_hostnames_overlap(first: str | None, second: str | None) -> bool:
    """Whether some request hostname matches both listener hostnames (a missing one matches every name):
    then a client may reuse one listener's TLS connection for the other's requests."""
    if first is None or second is None:
        return True
    return intersection(first, second) is not None


def _covers(listener: str | None, hostname: str) -> bool:
    """Whether every request hostname that ``hostname`` (a route's, maybe a wildcard) matches also
    matches the listener hostname."""
    if listener is None or listener == hostname:
        return True
    if not listener.startswith("*."):
        return False
    return _matches_wildcard(listener, hostname[2:] if hostname.startswith("*.") else hostname)


def _specificity(listener: str | None) -> int:
    """Which of two listeners a request matching both belongs to: an exact hostname, then the longer
    wildcard, then no hostname at all."""
    if listener is None:
        return -1
    return 1 << 16 if not listener.startswith("*.") else len(listener)


def isolated(hostnames: Sequence[str], listener: str | None, others: Sequence[str | None]) -> tuple[str, ...]:
    """The hostnames a route keeps on a listener once requests go to the most specific listener they
    match (GatewayHTTPListenerIsolation): one that a more specific listener on the same port covers
    whole is that listener's to serve, so it is dropped here.

    ``others`` are the hostnames of the other listeners sharing the port."""
    own = _specificity(listener)
    return tuple([hostname for hostname in hostnames
                   if not any(_specificity(other) > own and _covers(other, hostname) for other in others)])


def owner(hostname: str, listeners: Sequence[str | None]) -> int | None:
    """The index of the listener whose requests ``hostname`` (a virtual host's, maybe a wildcard or ``*``)
    serves: the most specific of ``listeners`` (hostnames on one port) that covers it whole; None if none
    does."""
    covering = [(_specificity(listener), i) for i, listener in enumerate(listeners) if _covers(listener, hostname)]
    return max(covering)[1] if covering else None


def route_hostnames_for_listener(listener: str | None, route_hostnames: Sequence[str]) -> list[str] | None:
    """The hostnames a route serves on a listener: ``None`` if they do not intersect at all.

    A route without hostnames takes the listener's (or ``*`` when the listener has none).
    """
    if not route_hostnames:
        return [listener or "*"]
    matched = []
    for hostname in route_hostnames:
        meet = intersection(listener, hostname)
        if meet is not None and meet not in matched:
            matched.append(meet)
    return matched or None
