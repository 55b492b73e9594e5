"""Every member cluster runs the controllers a user relies on, as in a real cluster:

- A Deployment makes a ReplicaSet, which makes the Pods; deleting the Deployment garbage-collects both.
- A new namespace gets its ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap.
- Deleting a namespace empties it (custom resources too) and finishes.
- A Service with a selector gets an EndpointSlice from the EndpointSlice controller; a selectorless
  Service's Endpoints are mirrored into a slice; a hand-made slice of a selectorless Service is left alone.

The clusters are shared by every e2e test, so each test works in namespaces of its own.
"""

from __future__ import annotations

import itertools
import urllib.error
from typing import Any

from tests.e2e.eventually import eventually
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.cluster import MemberCluster

APPS = "/apis/apps/v1"
SLICES = "/apis/discovery.k8s.io/v1"
MCS = "/apis/multicluster.x-k8s.io/v1beta1"
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABELS = {"app": "web"}
# Only ever an API value: nothing sends traffic to it.
ADDRESS = "198.18.255.10"
_names = itertools.count()


def _get(cluster: MemberCluster, path: str) -> Any:
    """The object at ``path``, or None once it is gone."""
    try:
        return cluster.request("GET", path)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def _items(cluster: MemberCluster, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.request("GET", path)["items"]
    return items


def _new_namespace(cluster: MemberCluster) -> str:
    name = f"kcm-{next(_names)}"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def _delete_namespace(cluster: MemberCluster, namespace: str) -> None:
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def _controller_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    """Kind and name of the object's controlling owner."""
    for owner in obj["metadata"].get("ownerReferences", []):
        if owner.get("controller"):
            return owner["kind"], owner["name"]
    return None


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS},
                         "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}},
        },
    }


async def test_deployment_makes_replicaset_and_pods_and_deleting_it_collects_them(clusterset: ClusterSet) -> None:
    east = clusterset.clusters["east"]
    namespace = _new_namespace(east)
    try:
        east.request("POST", f"{APPS}/namespaces/{namespace}/deployments", _deployment("web", replicas=2))

        def replica_sets() -> list[dict[str, Any]]:
            return _items(east, f"{APPS}/namespaces/{namespace}/replicasets")

        def pods() -> list[dict[str, Any]]:
            return _items(east, f"/api/v1/namespaces/{namespace}/pods")

        took = await eventually(lambda: len(replica_sets()) == 1 and len(pods()) == 2,
                                "the Deployment's ReplicaSet and its 2 Pods")
        print(f"\nDeployment -> ReplicaSet -> 2 Pods in {took:.2f}s")
        (replica_set,) = replica_sets()
        assert _controller_of(replica_set) == ("Deployment", "web")
        assert {_controller_of(pod) for pod in pods()} == {("ReplicaSet", replica_set["metadata"]["name"])}
        assert all(pod["metadata"]["labels"].items() >= LABELS.items() for pod in pods())
        await eventually(lambda: east.request("GET", f"{APPS}/namespaces/{namespace}/deployments/web")
                         .get("status", {}).get("replicas") == 2, "the Deployment to count its 2 replicas")

        east.request("PATCH", f"{APPS}/namespaces/{namespace}/deployments/web", {"spec": {"replicas": 3}},
                     content_type="application/merge-patch+json")
        await eventually(lambda: len(pods()) == 3, "a third Pod after scaling to 3")

        east.request("DELETE", f"{APPS}/namespaces/{namespace}/deployments/web")
        took = await eventually(lambda: replica_sets() == [] and pods() == [],
                                "garbage collection of the ReplicaSet and its Pods")
        print(f"Deployment deleted -> ReplicaSet and Pods collected in {took:.2f}s")
    finally:
        _delete_namespace(east, namespace)


async def _namespace_gets_default_service_account(name: str, cluster: MemberCluster) -> None:
    namespace = _new_namespace(cluster)
    try:
        took = await eventually(
            lambda: _get(cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts/default") is not None,
            f"the default ServiceAccount in {name}/{namespace}")
        print(f"\n{name}: default ServiceAccount after {took:.2f}s")
        await eventually(
            lambda: _get(cluster, f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt") is not None,
            f"kube-root-ca.crt in {name}/{namespace}")
        published = cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt")
        assert published["data"]["ca.crt"].strip() == cluster.pki.ca_cert.read_text().strip()
    finally:
        _delete_namespace(cluster, namespace)


async def test_new_namespace_gets_default_service_account_in_every_cluster(clusterset: ClusterSet) -> None:
    for name, cluster in clusterset.clusters.items():
        await _namespace_gets_default_service_account(name, cluster)


async def test_deleting_a_namespace_empties_it_and_finishes(clusterset: ClusterSet) -> None:
    west = clusterset.clusters["west"]
    namespace = _new_namespace(west)
    west.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "settings"}})
    west.request("POST", f"/api/v1/namespaces/{namespace}/services",
                 {"metadata": {"name": "cart"}, "spec": {"ports": [{"port": 80}]}})
    west.request("POST", f"{MCS}/namespaces/{namespace}/serviceexports", {
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport", "metadata": {"name": "cart"}})
    west.request("POST", f"{APPS}/namespaces/{namespace}/deployments", _deployment("web", replicas=1))
    await eventually(lambda: len(_items(west, f"/api/v1/namespaces/{namespace}/pods")) == 1, "the Deployment's Pod")

    _delete_namespace(west, namespace)
    took = await eventually(lambda: _get(west, f"/api/v1/namespaces/{namespace}") is None,
                            f"namespace {namespace} to be deleted")
    print(f"\nnamespace with a Deployment, a Service, a ConfigMap and a ServiceExport deleted in {took:.2f}s")
    # The namespace only goes once it is empty, and a namespace of that name starts empty again.
    west.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    try:
        assert _items(west, f"/api/v1/namespaces/{namespace}/configmaps?fieldSelector=metadata.name%3Dsettings") == []
        assert _items(west, f"{MCS}/namespaces/{namespace}/serviceexports") == []
        assert _items(west, f"{APPS}/namespaces/{namespace}/deployments") == []
    finally:
        _delete_namespace(west, namespace)


def _slices_of(cluster: MemberCluster, namespace: str, service: str) -> list[dict[str, Any]]:
    return _items(cluster, f"{SLICES}/namespaces/{namespace}/endpointslices?labelSelector={SERVICE_NAME}%3D{service}")


async def test_endpoint_slices_are_managed_as_in_a_real_cluster(clusterset: ClusterSet) -> None:
    central = clusterset.clusters["central"]
    namespace = _new_namespace(central)
    services = f"/api/v1/namespaces/{namespace}/services"
    port = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    try:
        central.request("POST", services, {"metadata": {"name": "selected"},
                                           "spec": {"selector": LABELS, "ports": [port]}})
        central.request("POST", services, {"metadata": {"name": "mirrored"}, "spec": {"ports": [port]}})
        central.request("POST", f"/api/v1/namespaces/{namespace}/endpoints", {
            "metadata": {"name": "mirrored"},
            "subsets": [{"addresses": [{"ip": ADDRESS}], "ports": [{"name": "http", "port": 8080}]}]})
        central.request("POST", services, {"metadata": {"name": "by-hand"}, "spec": {"ports": [port]}})
        central.request("POST", f"{SLICES}/namespaces/{namespace}/endpointslices", {
            "metadata": {"name": "by-hand-1", "labels": {SERVICE_NAME: "by-hand"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ADDRESS], "conditions": {"ready": True}}]})

        await eventually(lambda: len(_slices_of(central, namespace, "selected")) == 1,
                         "an EndpointSlice for the Service with a selector")
        (selected,) = _slices_of(central, namespace, "selected")
        assert selected["metadata"]["labels"][MANAGED_BY] == "endpointslice-controller.k8s.io"
        assert _controller_of(selected) == ("Service", "selected")
        assert not selected.get("endpoints"), "no pod matches the selector"

        await eventually(lambda: len(_slices_of(central, namespace, "mirrored")) == 1,
                         "the selectorless Service's Endpoints mirrored into an EndpointSlice")
        (mirrored,) = _slices_of(central, namespace, "mirrored")
        assert mirrored["metadata"]["labels"][MANAGED_BY] == "endpointslicemirroring-controller.k8s.io"
        assert [e["addresses"] for e in mirrored["endpoints"]] == [[ADDRESS]]

        (by_hand,) = _slices_of(central, namespace, "by-hand")
        assert by_hand["metadata"]["name"] == "by-hand-1"
        assert MANAGED_BY not in by_hand["metadata"].get("labels", {})
        assert [e["addresses"] for e in by_hand["endpoints"]] == [[ADDRESS]]
    finally:
        _delete_namespace(central, namespace)
