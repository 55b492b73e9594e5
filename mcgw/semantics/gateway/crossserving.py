"""Cross serving (GEP-1016): an HTTPRoute and a GRPCRoute never share a hostname on one listener.

When routes of both kinds bind to one listener and their hostnames intersect, the spec accepts exactly one
of the two: the older by creationTimestamp, then the first by ``namespace/name`` (then by kind, so that the
outcome never depends on the order routes were listed). Sharing would let a GRPCRoute's ``:path`` matches
take requests meant for the HTTPRoute in the one virtual host they would share.

It is the one rule where a route's status depends on other routes, so it is a pass over the bindings of
each listener after :func:`mcgw.semantics.gateway.evaluate.evaluate_route`: routes are taken oldest first,
and a binding is refused when one of its hostnames meets a hostname of a binding of the other kind kept
there before (a refused binding refuses nobody). A parent whose every binding is refused is
``Accepted: False`` with reason ``HostnameConflict`` (the spec names no reason; this is the one it uses for
listeners whose hostnames conflict), naming the route that keeps the hostname; a parent that keeps another
listener stays accepted there. A refused binding serves nothing and is not counted in ``attachedRoutes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.hostnames import intersection
from mcgw.semantics.gateway.routes import RouteKey

if TYPE_CHECKING:  # evaluate.py runs this pass
    from mcgw.semantics.gateway.evaluate import RouteResult

# The kinds that may not share a hostname on a listener with each other.
CROSS_SERVING_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})

ListenerKey = tuple[tuple[str, str], str]  # ((gateway namespace, gateway name), listener name)


class Claim(NamedTuple):
    """A route's binding to one listener, with what decides who keeps a shared hostname."""

    order: tuple[str, str, str, str]  # creationTimestamp, namespace, name, kind
    route: RouteKey
    hostnames: tuple[str, ...]


class Refusal(NamedTuple):
    """Why a route's binding to a listener is refused: the route of the other kind that keeps the hostname."""

    winner: RouteKey
    hostname: str  # a hostname of the winner's that meets one of the refused route's


def claims(key: RouteKey, result: RouteResult) -> Iterator[tuple[ListenerKey, Claim]]:
    """The route's bindings, if its kind is one of the cross-serving kinds (others claim nothing)."""
    if key[0] not in CROSS_SERVING_KINDS:
        return
    meta = result.route.metadata
    order = (meta.creation_timestamp, meta.namespace, meta.name, key[0])
    for parent in result.parents:
        for binding in parent.bindings:
            if binding.hostnames:
                yield (binding.gateway, binding.listener), Claim(order, key, binding.hostnames)


def hostnames_meet(first: str, second: str) -> bool:
    """Whether some request hostname matches both route hostnames (``*``, a route without any, matches all)."""
    return "*" in (first, second) or intersection(first, second) is not None


def _proper_suffixes(hostname: str) -> Iterator[str]:
    """``a.b.c`` → ``b.c``, ``c``: what a wildcard's base must be to match it."""
    dot = hostname.find(".")
    while dot >= 0:
        hostname = hostname[dot + 1:]
        yield hostname
        dot = hostname.find(".")


class _Kept:
    """The hostnames kept on a listener by one kind, indexed so that a hostname's meeting is a few look-ups.

    Hostnames are exact (``a.example.com``), wildcards (``*.example.com``: one or more labels before
    ``example.com``, never ``example.com`` itself) or ``*`` (everything). Thousands of routes share a listener
    and few hostnames, so a hostname kept again costs one look-up, as does asking again about one that met
    nothing."""

    __slots__ = ("by_base", "by_base_suffix", "by_exact", "by_exact_suffix", "everything", "known", "misses")

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.misses: set[str] = set()  # asked since the last new hostname, and met nothing
        self.everything: tuple[RouteKey, str] | None = None
        self.by_exact: dict[str, RouteKey] = {}
        self.by_exact_suffix: dict[str, tuple[RouteKey, str]] = {}  # a proper suffix of an exact name → it
        self.by_base: dict[str, RouteKey] = {}  # a wildcard's base (``example.com`` of ``*.example.com``)
        self.by_base_suffix: dict[str, tuple[RouteKey, str]] = {}  # a proper suffix of a base → the wildcard

    def add(self, route: RouteKey, hostname: str) -> None:
        if hostname in self.known:
            return  # the first route to keep it is the one named
        self.known.add(hostname)
        self.misses.clear()
        if hostname == "*":
            self.everything = self.everything or (route, hostname)
        elif hostname.startswith("*."):
            base = hostname[2:]
            self.by_base.setdefault(base, route)
            for suffix in _proper_suffixes(base):
                self.by_base_suffix.setdefault(suffix, (route, hostname))
        else:
            self.by_exact.setdefault(hostname, route)
            for suffix in _proper_suffixes(hostname):
                self.by_exact_suffix.setdefault(suffix, (route, hostname))

    def meets(self, hostname: str) -> Refusal | None:
        """A kept hostname that some request hostname matches along with ``hostname``, and its route."""
        if hostname in self.misses:
            return None
        found = self._meets(hostname)
        if found is None:
            self.misses.add(hostname)
        return found

    def _meets(self, hostname: str) -> Refusal | None:
        if self.everything is not None:
            return Refusal(*self.everything)
        if hostname == "*":
            for exact, owner in self.by_exact.items():
                return Refusal(owner, exact)
            for base, owner in self.by_base.items():
                return Refusal(owner, f"*.{base}")
            return None
        if not hostname.startswith("*."):
            if (route := self.by_exact.get(hostname)) is not None:
                return Refusal(route, hostname)
            for suffix in _proper_suffixes(hostname):  # a wildcard that covers it
                if (route := self.by_base.get(suffix)) is not None:
                    return Refusal(route, f"*.{suffix}")
            return None
        base = hostname[2:]
        if (found := self.by_exact_suffix.get(base)) is not None:  # an exact name the wildcard covers
            return Refusal(*found)
        if (route := self.by_base.get(base)) is not None:
            return Refusal(route, hostname)
        for suffix in _proper_suffixes(base):  # a wider wildcard
            if (route := self.by_base.get(suffix)) is not None:
                return Refusal(route, f"*.{suffix}")
        if (found := self.by_base_suffix.get(base)) is not None:  # a narrower wildcard
            return Refusal(*found)
        return None


def refusals(bound: Iterable[Claim]) -> dict[RouteKey, Refusal]:
    """The routes refused on one listener, given every claim on it."""
    claimed = list(bound)
    if len({claim.route[0] for claim in claimed}) < 2:
        return {}  # one kind alone never conflicts
    claimed.sort()
    kept = {kind: _Kept() for kind in CROSS_SERVING_KINDS}
    other_of = {kind: [index for name, index in kept.items() if name != kind] for kind in kept}
    refused: dict[RouteKey, Refusal] = {}
    for claim in claimed:
        kind = claim.route[0]
        refusal = next((found for hostname in claim.hostnames for other in other_of[kind]
                        if (found := other.meets(hostname)) is not None), None)
        if refusal is not None:
            refused[claim.route] = refusal
            continue
        own = kept[kind]
        for hostname in claim.hostnames:
            own.add(claim.route, hostname)
    return refused


def apply_refusals(result: RouteResult, refused: Mapping[ListenerKey, Refusal]) -> RouteResult:
    """The route result without its refused bindings; a parent left with none is not accepted."""
    if not refused:
        return result
    parents = list(result.parents)
    conditions = list(result.parent_conditions)
    generation = result.route.metadata.generation
    for index, parent in enumerate(parents):
        kept = tuple(b for b in parent.bindings if (b.gateway, b.listener) not in refused)
        if len(kept) == len(parent.bindings):
            continue
        if kept:
            parents[index] = parent._replace(bindings=kept)
            continue
        lost = [((b.gateway, b.listener), refused[(b.gateway, b.listener)]) for b in parent.bindings]
        ((gateway, listener), refusal), more = lost[0], len(lost) - 1
        winner = refusal.winner
        others = f" (and {more} more listener{'s' if more > 1 else ''})" if more else ""
        accepted = c.Condition(
            c.ACCEPTED, "False", c.REASON_HOSTNAME_CONFLICT,
            f"{winner[0]} {winner[1]}/{winner[2]} keeps hostname {refusal.hostname} on listener {listener} of "
            f"Gateway {gateway[0]}/{gateway[1]}{others} (it is older, or first by namespace/name): an HTTPRoute "
            "and a GRPCRoute may not share a hostname on a listener", generation)
        parents[index] = parent._replace(accepted=accepted, bindings=())
        conditions[index] = (accepted, *conditions[index][1:])
    return result._replace(parents=tuple(parents), parent_conditions=tuple(conditions))


def cross_serve(results: Mapping[RouteKey, RouteResult]) -> dict[RouteKey, RouteResult]:
    """Every route result with the bindings cross serving refuses taken out (a full pass)."""
    if len(CROSS_SERVING_KINDS.intersection({key[0] for key in results})) < 2:
        return dict(results)  # one kind alone refuses nothing: no pass over its bindings
    by_listener: dict[ListenerKey, list[Claim]] = {}
    for key, result in results.items():
        for listener, claim in claims(key, result):
            by_listener.setdefault(listener, []).append(claim)
    refused: dict[RouteKey, dict[ListenerKey, Refusal]] = {}
    for listener, bound in by_listener.items():
        for route, refusal in refusals(bound).items():
            refused.setdefault(route, {})[listener] = refusal
    return {key: apply_refusals(result, refused[key]) if key in refused else result
            for key, result in results.items()}
