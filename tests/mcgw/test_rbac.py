"""deploy/rbac/mcgw.yaml grants exactly what the registry of kinds says mcgw does: a kind added to
``mcgw.objects.kinds.KINDS`` without its permission, or a permission nothing uses, fails here (the
provisioning e2e then runs mcgw with exactly these rules against a real kube-apiserver)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from mcgw.objects.kinds import GENERATED_KINDS, KINDS, Kind

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "mcgw.yaml"
READ = frozenset({"get", "list", "watch"})
# What the MCS controller owns (mcgw.providers.kubernetes.mcs_writer): ServiceImports and their
# EndpointSlices, written with create/update/delete, and the ServiceImports' status.
MCS_OWNED = ("ServiceImport", "EndpointSlice")
MCS_STATUS = ("ServiceImport",)
# Owner references with blockOwnerDeletion on the generated objects need update on the owner's finalizers.
OWNER_FINALIZERS = {("gateway.networking.k8s.io", "gateways/finalizers"): {"update"}}
LEASES = {("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "update"}}

Grants = dict[tuple[str, str], set[str]]


def _grants(kind: str) -> Grants:
    granted: Grants = {}
    for document in yaml.safe_load_all(RBAC.read_text()):
        if document["kind"] != kind:
            continue
        for rule in document["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def needed(kinds: Iterable[Kind]) -> Grants:
    """What mcgw does with each kind, as RBAC verbs on (group, resource)."""
    by_name = {kind.name: kind for kind in kinds}
    wanted: Grants = {}
    for kind in by_name.values():
        wanted.setdefault((kind.group, kind.plural), set()).update(READ)
        if kind.status:
            wanted.setdefault((kind.group, f"{kind.plural}/status"), set()).update({"get", "update"})
    for name in MCS_OWNED:
        wanted[(by_name[name].group, by_name[name].plural)].update({"create", "update", "delete"})
    for name in MCS_STATUS:
        wanted.setdefault((by_name[name].group, f"{by_name[name].plural}/status"), set()).update({"get", "update"})
    for name in GENERATED_KINDS:
        wanted[(by_name[name].group, by_name[name].plural)].update({"create", "patch", "delete"})
    for key, verbs in OWNER_FINALIZERS.items():
        wanted.setdefault(key, set()).update(verbs)
    return wanted


def _difference(granted: Grants, wanted: Grants) -> tuple[list[str], list[str]]:
    missing = sorted(f"{verb} {group or 'core'}/{resource}" for (group, resource), verbs in wanted.items()
                     for verb in verbs - granted.get((group, resource), set()))
    extra = sorted(f"{verb} {group or 'core'}/{resource}" for (group, resource), verbs in granted.items()
                   for verb in verbs - wanted.get((group, resource), set()))
    return missing, extra


def test_the_cluster_role_grants_exactly_what_the_registry_needs() -> None:
    missing, extra = _difference(_grants("ClusterRole"), needed(KINDS))
    assert missing == [], f"deploy/rbac/mcgw.yaml lacks: {missing}"
    assert extra == [], f"deploy/rbac/mcgw.yaml grants what mcgw never uses: {extra}"


def test_leader_election_needs_only_its_leases() -> None:
    assert _grants("Role") == LEASES


def test_a_kind_added_without_its_permission_is_named() -> None:
    listener_sets = Kind("ListenerSet", object, "gateway.networking.k8s.io/v1", "listenersets", status="route")
    missing, _ = _difference(_grants("ClusterRole"), needed((*KINDS, listener_sets)))
    group = "gateway.networking.k8s.io"
    assert missing == [f"get {group}/listenersets", f"get {group}/listenersets/status", f"list {group}/listenersets",
                       f"update {group}/listenersets/status", f"watch {group}/listenersets"]
