"""The status writer against a real kube-apiserver: it writes what changed and nothing else, keeps other
controllers' conditions, writes only while leading, and shrugs off objects deleted under it.

Each test makes its own GatewayClass, namespace, Gateway and HTTPRoute in cluster ``east`` and
deletes them afterwards, so other tests that list ``east`` never see them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from mcgw.admin.metrics import ControllerMetrics
from mcgw.objects.kinds import Statuses
from mcgw.objects.model import AnyObject, parse_object
from mcgw.providers.kubernetes.status_writer import StatusWriter
from mcgw.runtime.pipeline import translate_cluster
from tests.e2e.testbed import ClusterSet

GW = "gateway.networking.k8s.io"
CONTROLLER = "mcgw.io/gateway-controller"
FOREIGN_CONDITION = {"type": "example.com/Audited", "status": "True", "reason": "Audited", "message": "theirs",
                     "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}
FOREIGN_PARENT = {"parentRef": {"group": GW, "kind": "Gateway", "namespace": "elsewhere", "name": "theirs"},
                  "controllerName": "example.com/another-controller",
                  "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                                  "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
_names = itertools.count()


@dataclass
class Scene:
    """One test's objects in ``east``: GatewayClass ``name``, and in namespace ``name`` Gateway ``gw`` and
    HTTPRoute ``web``."""

    api: client.ApiClient
    name: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    async def fetch(self, kind: str) -> dict[str, Any]:
        if kind == "GatewayClass":
            result = await self.custom.get_cluster_custom_object_status(GW, "v1", "gatewayclasses", self.name)
        else:
            plural = {"Gateway": "gateways", "HTTPRoute": "httproutes"}[kind]
            name = {"Gateway": "gw", "HTTPRoute": "web"}[kind]
            result = await self.custom.get_namespaced_custom_object_status(GW, "v1", self.name, plural, name)
        return cast(dict[str, Any], result)

    async def objects(self, kinds: tuple[str, ...] = ("GatewayClass", "Gateway", "HTTPRoute")) -> list[AnyObject]:
        return [parse_object({**await self.fetch(kind), "kind": kind}, f"east {kind}") for kind in kinds]

    async def output(self, kinds: tuple[str, ...] = ("GatewayClass", "Gateway", "HTTPRoute")) -> Statuses:
        """The statuses the controller computes from this scene's objects as the API server has them now."""
        return translate_cluster("east", await self.objects(kinds)).statuses()

    async def resource_versions(self) -> dict[str, str]:
        return {kind: (await self.fetch(kind))["metadata"]["resourceVersion"]
                for kind in ("GatewayClass", "Gateway", "HTTPRoute")}

    async def set_status(self, kind: str, status: dict[str, Any]) -> None:
        """Another writer (a controller, a person) replaces the stored status."""
        stored = await self.fetch(kind)
        plural = {"Gateway": "gateways", "HTTPRoute": "httproutes"}[kind]
        await self.custom.replace_namespaced_custom_object_status(
            GW, "v1", self.name, plural, stored["metadata"]["name"], {**stored, "status": status})


@pytest.fixture
async def east_api(clusterset: ClusterSet) -> AsyncIterator[client.ApiClient]:
    cluster = clusterset.clusters["east"]
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig), context=cluster.name)
    yield api
    await api.close()


@pytest.fixture
async def scene(east_api: client.ApiClient) -> AsyncIterator[Scene]:
    name = f"status-writer-{next(_names)}"
    custom, core = client.CustomObjectsApi(east_api), client.CoreV1Api(east_api)
    await core.create_namespace({"metadata": {"name": name}})
    await custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", {
        "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": name},
        "spec": {"controllerName": CONTROLLER}})
    await custom.create_namespaced_custom_object(GW, "v1", name, "gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": name, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})
    await custom.create_namespaced_custom_object(GW, "v1", name, "httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "nowhere", "port": 80}]}]}})
    yield Scene(east_api, name)
    deletions: list[Callable[[], Any]] = [
        lambda: custom.delete_namespaced_custom_object(GW, "v1", name, "httproutes", "web"),
        lambda: custom.delete_namespaced_custom_object(GW, "v1", name, "gateways", "gw"),
        lambda: custom.delete_cluster_custom_object(GW, "v1", "gatewayclasses", name),
    ]
    for delete in deletions:
        try:
            await delete()
        except ApiException as error:
            if error.status != 404:
                raise


def _types(conditions: list[dict[str, Any]]) -> set[str]:
    return {c["type"] for c in conditions}


async def test_first_write_writes_and_an_unchanged_status_is_not_written_again(scene: Scene) -> None:
    output = await scene.output()
    writer = StatusWriter(scene.api, "east")
    assert await writer.write(output) == 3  # GatewayClass, Gateway, HTTPRoute
    written = await scene.resource_versions()
    route = (await scene.fetch("HTTPRoute"))["status"]["parents"][0]
    assert route["controllerName"] == CONTROLLER
    assert {c["type"]: c["status"] for c in route["conditions"]}["ResolvedRefs"] == "False"  # no Service nowhere

    assert await writer.write(output) == 0
    assert await writer.write(await scene.output()) == 0  # recomputed from the stored objects: still the same
    # A new writer (a restarted controller) reads, finds the merge identical, and writes nothing either.
    assert await StatusWriter(scene.api, "east").write(output) == 0
    assert await scene.resource_versions() == written

    # Changing the route's spec changes its status (observedGeneration) and nothing else's.
    await scene.custom.patch_namespaced_custom_object(GW, "v1", scene.name, "httproutes", "web",
                                                      {"spec": {"hostnames": ["web.example.com"]}})
    assert await writer.write(await scene.output()) == 1
    after = await scene.resource_versions()
    assert after["HTTPRoute"] != written["HTTPRoute"]
    assert (after["Gateway"], after["GatewayClass"]) == (written["Gateway"], written["GatewayClass"])
    stored = await scene.fetch("HTTPRoute")
    generation = stored["metadata"]["generation"]
    assert generation == 2
    assert {c["observedGeneration"] for c in stored["status"]["parents"][0]["conditions"]} == {generation}


async def test_conditions_and_parents_of_other_controllers_survive(scene: Scene) -> None:
    await scene.set_status("Gateway", {"conditions": [FOREIGN_CONDITION]})
    await scene.set_status("HTTPRoute", {"parents": [FOREIGN_PARENT]})
    assert await StatusWriter(scene.api, "east").write(await scene.output()) == 3

    gateway = await scene.fetch("Gateway")
    assert FOREIGN_CONDITION in gateway["status"]["conditions"]
    assert {"Accepted", "Programmed"} <= _types(gateway["status"]["conditions"])
    assert all(c["observedGeneration"] == gateway["metadata"]["generation"]
               for c in gateway["status"]["conditions"] if c["type"] != FOREIGN_CONDITION["type"])
    parents = {p["controllerName"]: p for p in (await scene.fetch("HTTPRoute"))["status"]["parents"]}
    assert parents["example.com/another-controller"] == FOREIGN_PARENT
    assert "Accepted" in _types(parents[CONTROLLER]["conditions"])


async def test_only_the_leader_writes_and_a_new_term_checks_everything_again(scene: Scene) -> None:
    leading = False
    writer = StatusWriter(scene.api, "east", is_leader=lambda: leading)
    output = await scene.output()
    before = await scene.resource_versions()
    assert await writer.write(output) == 0
    await writer("east", output)  # as the reconciler's sink
    assert await scene.resource_versions() == before

    leading = True
    assert await writer.write(output) == 3
    # Someone else overwrites the route's status. While this writer keeps leading it trusts its memory...
    await scene.set_status("HTTPRoute", {"parents": []})
    assert await writer.write(output) == 0
    # ...but after losing and regaining leadership it checks every object and repairs the route.
    leading = False
    assert await writer.write(output) == 0
    leading = True
    assert await writer.write(output) == 1
    assert [p["controllerName"] for p in (await scene.fetch("HTTPRoute"))["status"]["parents"]] == [CONTROLLER]


async def test_sink_ignores_other_clusters_outputs(scene: Scene) -> None:
    before = await scene.resource_versions()
    await StatusWriter(scene.api, "west")("east", await scene.output())
    assert await scene.resource_versions() == before


async def test_an_object_deleted_before_its_write_is_skipped(scene: Scene) -> None:
    output = await scene.output()
    await scene.custom.delete_namespaced_custom_object(GW, "v1", scene.name, "httproutes", "web")
    metrics = ControllerMetrics(CollectorRegistry())
    writer = StatusWriter(scene.api, "east", metrics=metrics)
    assert await writer.write(output) == 2  # the GatewayClass and the Gateway; the route is gone, no error
    # Skipped, not failed: a deleted object is no write error.
    assert metrics.registry.get_sample_value("mcgw_status_write_errors_total",
                                             {"cluster": "east", "kind": "HTTPRoute"}) is None
    assert metrics.registry.get_sample_value("mcgw_status_writes_total", {"cluster": "east", "kind": "Gateway"}) == 1
    assert await writer.write(await scene.output(("GatewayClass", "Gateway"))) == 1  # attachedRoutes is now 0
    listener = (await scene.fetch("Gateway"))["status"]["listeners"][0]
    assert listener["attachedRoutes"] == 0


async def test_an_object_that_left_the_output_is_checked_again_when_it_returns(scene: Scene) -> None:
    writer = StatusWriter(scene.api, "east")
    full = await scene.output()
    assert await writer.write(full) == 3
    # The route drops out of the computed statuses (say its parentRef stops naming our Gateway)...
    assert await writer.write(await scene.output(("GatewayClass", "Gateway"))) == 1  # attachedRoutes 1 → 0
    await scene.set_status("HTTPRoute", {"parents": []})
    # ...and comes back: the writer has forgotten it, so it reads the stored status and repairs it.
    assert await writer.write(full) == 2  # Gateway (attachedRoutes 0 → 1) and HTTPRoute
    assert [p["controllerName"] for p in (await scene.fetch("HTTPRoute"))["status"]["parents"]] == [CONTROLLER]


async def test_a_route_created_again_under_the_same_name_gets_its_status(scene: Scene) -> None:
    """Deleted and created again between two writes (the conformance suite does this from one test to the
    next), a route's computed status is identical to the one written for the old object; the writer tells
    them apart by UID, so the new object does not stay without status."""
    uids: dict[tuple[str, str, str], str] = {}

    async def remember_uids() -> None:
        for kind in ("GatewayClass", "Gateway", "HTTPRoute"):
            meta = (await scene.fetch(kind))["metadata"]
            uids[(kind, meta.get("namespace", ""), meta["name"])] = meta["uid"]

    await remember_uids()
    writer = StatusWriter(scene.api, "east", identity=lambda key: uids.get(key, ""))
    output = await scene.output()
    assert await writer.write(output) == 3
    route = await scene.fetch("HTTPRoute")
    await scene.custom.delete_namespaced_custom_object(GW, "v1", scene.name, "httproutes", "web")
    await scene.custom.create_namespaced_custom_object(GW, "v1", scene.name, "httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "web"}, "spec": route["spec"]})
    await remember_uids()
    assert await scene.output() == output  # the same computed statuses...
    assert await writer.write(output) == 1  # ...yet the new route is written
    parents = (await scene.fetch("HTTPRoute")).get("status", {}).get("parents", [])
    assert [p["controllerName"] for p in parents] == [CONTROLLER]
