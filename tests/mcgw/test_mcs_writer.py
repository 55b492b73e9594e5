"""McsWriter against an in-memory API server: diff-only writes, only our own objects, status merging,
clean-up of what is no longer exported, 409/404 handling, leadership, and repair of drift."""

from __future__ import annotations

import copy
import logging
from typing import Any, cast

import pytest
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.model import AnyObject, parse_object
from mcgw.providers.kubernetes.mcs_writer import McsWriter, ObjectApi, object_path
from mcgw.semantics.mcs import ClusterMcs, compute_mcs
from tests.mcgw.test_mcs import exported_by_east_and_west, healthy, parsed

_KINDS = {"serviceexports": "ServiceExport", "serviceimports": "ServiceImport", "endpointslices": "EndpointSlice"}


class FakeApi(ObjectApi):
    """Objects by (kind, namespace, name), with resourceVersion checks and a status subresource."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None))
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.errors: dict[tuple[str, str], list[ApiException]] = {}  # (method, path) -> errors to raise first
        self._version = 0

    def _key(self, path: str) -> tuple[tuple[str, str, str], bool]:
        parts = path.strip("/").split("/")
        status = parts[-1] == "status"
        if status:
            parts = parts[:-1]
        index = parts.index("namespaces")
        return (_KINDS[parts[index + 2]], parts[index + 1], parts[index + 3]), status

    def _call(self, method: str, path: str) -> None:
        self.calls.append((method, path))
        if queued := self.errors.get((method, path)):
            raise queued.pop(0)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(obj)

    def put(self, obj: dict[str, Any]) -> None:
        """Store an object directly, as another client would have."""
        metadata = obj["metadata"]
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("generation", 1)
        self.objects[(obj["kind"], metadata["namespace"], metadata["name"])] = stored
        self._bump(stored)

    async def get(self, path: str) -> dict[str, Any] | None:
        self._call("GET", path)
        key, _ = self._key(path)
        return copy.deepcopy(self.objects[key]) if key in self.objects else None

    async def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        self._call("POST", collection)
        key, _ = self._key(f"{collection}/{body['metadata']['name']}")
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        stored = {**copy.deepcopy(body), "kind": key[0]}
        stored["metadata"]["generation"] = 1
        stored.pop("status", None)
        self.objects[key] = stored
        return self._bump(stored)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._call("PUT", path)
        key, status = self._key(path)
        if key not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        stored = self.objects[key]
        if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        if status:
            stored["status"] = copy.deepcopy(body["status"])
        else:
            fresh = {**copy.deepcopy(body), "status": stored.get("status")}
            if fresh.get("spec") != stored.get("spec"):
                fresh["metadata"]["generation"] = stored["metadata"]["generation"] + 1
            stored = self.objects[key] = fresh
        return self._bump(stored)

    async def delete(self, path: str) -> bool:
        self._call("DELETE", path)
        key, _ = self._key(path)
        return self.objects.pop(key, None) is not None

    async def list(self, collection: str, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(("LIST", collection))
        label, _, value = label_selector.partition("=")
        kind = _KINDS[collection.rstrip("/").split("/")[-1]]
        return [copy.deepcopy(o) for k, o in sorted(self.objects.items())
                if k[0] == kind and o["metadata"].get("labels", {}).get(label) == value]

    def observed(self) -> list[AnyObject]:
        """What an informer would show."""
        return [parse_object(o, "fake") for o in self.objects.values()]

    def writes(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] not in ("GET", "LIST")]


def desired_for(cluster: str, clusters: dict[str, list[dict[str, Any]]] | None = None) -> ClusterMcs:
    clusters = clusters or exported_by_east_and_west()
    return compute_mcs(parsed(clusters), healthy(*clusters), 0.0).clusters[cluster]


def east_api_with_exports() -> FakeApi:
    api = FakeApi()
    for item in exported_by_east_and_west()["east"]:
        if item["kind"] == "ServiceExport":
            api.put(item)
    return api


async def test_the_first_write_creates_imports_and_slices_and_sets_export_status() -> None:
    api = east_api_with_exports()
    report = await McsWriter(api, "east").write(desired_for("east"))
    assert report.failed == 0
    imported = api.objects[("ServiceImport", "shop", "cart")]
    assert imported["spec"]["type"] == "ClusterSetIP"
    assert imported["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
    ready = imported["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["observedGeneration"]) == ("Ready", "True", 1)
    assert ready["lastTransitionTime"]
    assert {k[2] for k in api.objects if k[0] == "EndpointSlice"} == {"cart.east", "cart.west"}
    export_status = api.objects[("ServiceExport", "shop", "cart")]["status"]
    assert [(c["type"], c["status"]) for c in export_status["conditions"]] == [
        ("Valid", "True"), ("Ready", "True"), ("Conflict", "False")]


async def test_an_unchanged_result_costs_no_api_call() -> None:
    api = east_api_with_exports()
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    api.calls.clear()
    report = await writer.write(desired_for("east"), api.observed())
    assert (report.written, report.failed) == (0, 0)
    assert api.calls == []


async def test_a_restarted_writer_finds_its_objects_in_place_and_writes_nothing() -> None:
    api = east_api_with_exports()
    await McsWriter(api, "east").write(desired_for("east"))
    api.calls.clear()
    report = await McsWriter(api, "east").write(desired_for("east"), api.observed())
    assert report.written == 0
    assert api.writes() == []


async def test_objects_left_by_a_previous_run_are_deleted_when_no_longer_exported() -> None:
    api = east_api_with_exports()
    await McsWriter(api, "east").write(desired_for("east"))
    nothing = exported_by_east_and_west()
    nothing["east"] = [item for item in nothing["east"] if item["kind"] != "ServiceExport"]
    nothing["west"] = [item for item in nothing["west"] if item["kind"] != "ServiceExport"]
    report = await McsWriter(api, "east").write(desired_for("east", nothing), api.observed())  # a new process
    assert report.written == 3
    assert [k for k in api.objects if k[0] != "ServiceExport"] == []


async def test_unexporting_from_one_cluster_deletes_only_its_slices() -> None:
    api = east_api_with_exports()
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    west_gone = exported_by_east_and_west()
    west_gone["west"] = [item for item in west_gone["west"] if item["kind"] != "ServiceExport"]
    api.calls.clear()
    await writer.write(desired_for("east", west_gone), api.observed())
    assert {k[2] for k in api.objects if k[0] == "EndpointSlice"} == {"cart.east"}
    assert api.objects[("ServiceImport", "shop", "cart")]["status"]["clusters"] == [{"cluster": "east"}]
    assert ("DELETE", object_path("EndpointSlice", "shop", "cart.west")) in api.writes()


async def test_someone_elses_objects_are_never_touched() -> None:
    api = east_api_with_exports()
    foreign_import = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                      "metadata": {"name": "cart", "namespace": "shop", "labels": {"owner": "someone"}},
                      "spec": {"type": "Headless", "ports": []}}
    foreign_slice = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "cart.west", "namespace": "shop"}, "addressType": "IPv4", "endpoints": []}
    api.put(foreign_import)
    api.put(foreign_slice)
    before = copy.deepcopy({k: v for k, v in api.objects.items() if k[0] != "ServiceExport"})
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    assert {k: api.objects[k] for k in before} == before
    assert ("EndpointSlice", "shop", "cart.east") in api.objects  # ours is written all the same
    # Not ours to delete either, when the export goes.
    nothing = exported_by_east_and_west()
    for cluster in ("east", "west"):
        nothing[cluster] = [item for item in nothing[cluster] if item["kind"] != "ServiceExport"]
    await writer.write(desired_for("east", nothing), api.observed())
    assert {k: api.objects[k] for k in before} == before


async def test_a_foreign_object_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    api = east_api_with_exports()
    api.put({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
             "metadata": {"name": "cart", "namespace": "shop"}, "spec": {"type": "Headless", "ports": []}})
    writer = McsWriter(api, "east")
    with caplog.at_level(logging.WARNING):
        await writer.write(desired_for("east"), api.observed())
        await writer.write(desired_for("east"), api.observed())
    assert sum("not managed by mcgw" in r.getMessage() for r in caplog.records) == 1


async def test_export_status_keeps_foreign_conditions_and_transition_times() -> None:
    api = east_api_with_exports()
    key = ("ServiceExport", "shop", "cart")
    api.objects[key]["status"] = {"conditions": [
        {"type": "Synced", "status": "True", "reason": "Other", "message": "",
         "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "Valid", "status": "True", "reason": "Valid", "message": "old words",
         "lastTransitionTime": "2020-01-02T00:00:00Z"}]}
    await McsWriter(api, "east").write(desired_for("east"))
    conditions = {c["type"]: c for c in api.objects[key]["status"]["conditions"]}
    assert conditions["Synced"]["reason"] == "Other"
    assert conditions["Valid"]["lastTransitionTime"] == "2020-01-02T00:00:00Z"  # status unchanged
    assert conditions["Valid"]["message"] != "old words"
    assert conditions["Ready"]["lastTransitionTime"] != "2020-01-02T00:00:00Z"


async def test_a_conflict_is_retried_with_a_fresh_read() -> None:
    api = east_api_with_exports()
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    path = object_path("ServiceImport", "shop", "cart")
    api.errors[("PUT", f"{path}/status")] = [ApiException(status=409, reason="Conflict")]
    west_gone = exported_by_east_and_west()
    west_gone["west"] = [item for item in west_gone["west"] if item["kind"] != "ServiceExport"]
    report = await writer.write(desired_for("east", west_gone), api.observed())
    assert report.failed == 0
    assert api.objects[("ServiceImport", "shop", "cart")]["status"]["clusters"] == [{"cluster": "east"}]


async def test_an_object_already_deleted_is_fine() -> None:
    api = east_api_with_exports()
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    del api.objects[("EndpointSlice", "shop", "cart.west")]
    west_gone = exported_by_east_and_west()
    west_gone["west"] = [item for item in west_gone["west"] if item["kind"] != "ServiceExport"]
    report = await writer.write(desired_for("east", west_gone), api.observed())
    assert report.failed == 0


async def test_a_failed_write_is_reported_and_tried_again_next_time() -> None:
    api = east_api_with_exports()
    api.errors[("POST", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices")] = [
        ApiException(status=403, reason="Forbidden")]
    writer = McsWriter(api, "east")
    report = await writer.write(desired_for("east"))
    assert report.failed == 1
    assert len([k for k in api.objects if k[0] == "EndpointSlice"]) == 1
    report = await writer.write(desired_for("east"), api.observed())
    assert report.failed == 0
    assert len([k for k in api.objects if k[0] == "EndpointSlice"]) == 2


async def test_an_object_deleted_by_someone_else_is_recreated() -> None:
    api = east_api_with_exports()
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    del api.objects[("EndpointSlice", "shop", "cart.west")]
    await writer.write(desired_for("east"), api.observed())
    assert ("EndpointSlice", "shop", "cart.west") in api.objects


async def test_an_object_changed_by_someone_else_is_repaired() -> None:
    api = east_api_with_exports()
    writer = McsWriter(api, "east")
    await writer.write(desired_for("east"))
    api.objects[("ServiceImport", "shop", "cart")]["spec"]["type"] = "Headless"
    await writer.write(desired_for("east"), api.observed())
    assert api.objects[("ServiceImport", "shop", "cart")]["spec"]["type"] == "ClusterSetIP"


async def test_only_the_leader_writes_and_a_new_term_checks_everything_again() -> None:
    api = east_api_with_exports()
    leading = False
    writer = McsWriter(api, "east", lambda: leading)
    await writer.write(desired_for("east"))
    assert api.calls == []
    leading = True
    await writer.write(desired_for("east"))
    assert ("ServiceImport", "shop", "cart") in api.objects
    leading = False
    await writer.write(desired_for("east"))
    leading = True
    api.calls.clear()
    await writer.write(desired_for("east"), api.observed())
    assert api.calls[0][0] == "LIST"  # the new term starts by listing what is ours
    assert api.writes() == []


async def test_an_export_deleted_before_its_status_is_written_is_skipped() -> None:
    api = FakeApi()  # the ServiceExport is in the result but no longer in the API
    report = await McsWriter(api, "east").write(desired_for("east"))
    assert report.failed == 0
    assert ("ServiceExport", "shop", "cart") not in api.objects
