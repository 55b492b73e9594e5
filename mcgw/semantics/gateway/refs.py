"""ReferenceGrant: whether an object in one namespace may refer to an object in another.

A reference within one namespace needs no grant. Across namespaces, some grant in the *target*
namespace must list the referrer in ``from`` and the target in ``to`` (any name, or this name).
Deleting the grant revokes the reference, because this is recomputed from the current grants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcgw.objects.model import ReferenceGrant


@dataclass(frozen=True)
class Reference:
    from_group: str
    from_kind: str
    from_namespace: str
    to_group: str
    to_kind: str
    to_namespace: str
    to_name: str


def is_permitted(reference: Reference, grants: Iterable[ReferenceGrant]) -> bool:
    if reference.from_namespace == reference.to_namespace:
        return True
    for grant in grants:
        if grant.metadata.namespace != reference.to_namespace:
            continue
        allowed_from = any(
            (f.group, f.kind, f.namespace) == (reference.from_group, reference.from_kind, reference.from_namespace)
            for f in grant.spec.from_
        )
        allowed_to = any(
            t.group == reference.to_group and t.kind == reference.to_kind and t.name in (None, reference.to_name)
            for t in grant.spec.to
        )
        if allowed_from and allowed_to:
            return True
    return False
