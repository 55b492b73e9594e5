"""What charts/mcgw renders is accepted by a real kube-apiserver: every object, the CRDs included, goes
through server-side apply with dryRun=All and strict field validation, so an unknown field, a wrong type
or an invalid value fails here as it would at `helm install` or `kubectl apply`."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
from typing import Any

import pytest

from tests.chart import NAMESPACE, PLAIN_VALUES, REPO, objects, template
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.cluster import MemberCluster


def _resources(cluster: MemberCluster, api_version: str) -> dict[str, dict[str, Any]]:
    path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    listed = cluster.request("GET", path)["resources"]
    return {r["kind"]: r for r in listed if "/" not in r["name"]}


class Rejected(Exception):
    """The API server refused an object; the message is its answer."""


def _dry_run_apply(cluster: MemberCluster, obj: dict[str, Any]) -> dict[str, Any]:
    api_version = obj["apiVersion"]
    resource = _resources(cluster, api_version)[obj["kind"]]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if resource["namespaced"]:
        base += f"/namespaces/{obj['metadata']['namespace']}"
    query = urllib.parse.urlencode({"dryRun": "All", "fieldManager": "mcgw-chart-test", "force": "true",
                                    "fieldValidation": "Strict"})
    path = f"{base}/{resource['name']}/{obj['metadata']['name']}?{query}"
    try:
        answer: dict[str, Any] = cluster.request("PATCH", path, obj, content_type="application/apply-patch+yaml")
    except urllib.error.HTTPError as error:
        raise Rejected(f"{obj['kind']} {obj['metadata']['name']}: {error.read().decode()}") from None
    return answer


@pytest.mark.parametrize("values", [PLAIN_VALUES, REPO / "examples" / "helm" / "inline-values.yaml"],
                         ids=["existing-secrets", "inline-kubeconfigs"])
def test_every_rendered_object_is_accepted(clusterset: ClusterSet, values: Any) -> None:
    cluster = next(iter(clusterset.clusters.values()))
    namespaces = {n["metadata"]["name"] for n in cluster.request("GET", "/api/v1/namespaces")["items"]}
    if NAMESPACE not in namespaces:  # the release's namespace exists before a chart is installed
        cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": NAMESPACE}})
    rendered = objects(template(values, "--include-crds"))
    accepted = [_dry_run_apply(cluster, obj) for obj in rendered]
    assert [(a["kind"], a["metadata"]["name"]) for a in accepted] == [
        (o["kind"], o["metadata"]["name"]) for o in rendered]
    kinds = {o["kind"] for o in rendered}
    assert {"CustomResourceDefinition", "ServiceAccount", "ConfigMap", "Service", "Deployment", "ClusterRole",
            "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget"} <= kinds
    print(f"dry-run accepted {len(accepted)} objects: {json.dumps(sorted(kinds))}")


def test_a_field_the_api_does_not_know_is_rejected(clusterset: ClusterSet) -> None:
    """The check above can fail: strict validation refuses what helm renders without complaint."""
    cluster = next(iter(clusterset.clusters.values()))
    service, = (o for o in objects(template(PLAIN_VALUES)) if o["kind"] == "Service")
    service["metadata"]["namespace"] = "default"
    service["spec"]["ports"][0]["targetPorts"] = "xds"
    with pytest.raises(Rejected, match=r"targetPorts: field not declared in schema"):
        _dry_run_apply(cluster, service)
