"""What the spec treats alike for every route kind: the common view of a route, its key, rule checks.

Attachment (parentRefs, hostnames), ReferenceGrant checks of backendRefs, ``status.parents`` and
``attachedRoutes`` read only this view, so they serve every route kind. What differs per kind
(matches, rule checks, precedence, IR building) lives in a module per kind, named in
:mod:`mcgw.semantics.gateway.routekinds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from mcgw.objects.model import BackendRef, ObjectMeta, ParentReference
from mcgw.semantics.gateway import conditions as c

# (kind, namespace, name): an HTTPRoute and a GRPCRoute of the same name are different routes.
RouteKey = tuple[str, str, str]


class RouteRuleView(Protocol):
    @property
    def backend_refs(self) -> Sequence[BackendRef]: ...


class RouteSpecView(Protocol):
    @property
    def parent_refs(self) -> Sequence[ParentReference]: ...
    @property
    def hostnames(self) -> Sequence[str]: ...
    @property
    def rules(self) -> Sequence[RouteRuleView]: ...


class RouteView(Protocol):
    """Any route kind, as attachment, backend resolution and status read it."""

    @property
    def kind(self) -> str: ...
    @property
    def metadata(self) -> ObjectMeta: ...
    @property
    def spec(self) -> RouteSpecView: ...


def route_key(route: RouteView) -> RouteKey:
    meta = route.metadata
    return route.kind, meta.namespace, meta.name


class RuleCheck(NamedTuple):
    """Which rules of a route can be programmed, and the conditions for those that cannot."""

    kept: tuple[int, ...]  # indexes of rules that can be programmed
    partially_invalid: c.Condition | None
    all_dropped: str | None  # the message when no rule is left


def rule_check(route: RouteView, problems: Sequence[str | None]) -> RuleCheck:
    """A route's :class:`RuleCheck` from one problem (or ``None``) per rule, by the spec's reasons."""
    dropped = [f"Dropped Rule {index}: {problem}" for index, problem in enumerate(problems) if problem]
    kept = tuple(index for index, problem in enumerate(problems) if not problem)
    if not dropped:
        return RuleCheck(kept, None, None)
    message = "; ".join(dropped)
    if not kept:
        return RuleCheck((), None, message)
    return RuleCheck(kept, c.Condition(c.PARTIALLY_INVALID, "True", c.REASON_UNSUPPORTED_VALUE, message,
                                       route.metadata.generation), None)
