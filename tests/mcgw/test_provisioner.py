"""The provisioning applier against an in-memory API server: what it writes, what it leaves alone, when.

The fake stores what is applied (server-side apply of an object we fully own replaces what we set) and
shows the informers' view: the generated kinds only with our managed-by label, Services whole.
"""

from __future__ import annotations

import copy
import itertools
import logging
from typing import Any, cast

import pytest
from kubernetes.aio.client.exceptions import ApiException

from mcgw.dataplane.bootstrap import read_template
from mcgw.objects.model import AnyObject, Gateway, parse_object
from mcgw.providers.kubernetes.provisioner import FOREIGN_RECHECK, ObjectKey, ProvisionApi, Provisioner
from mcgw.provisioning import ProxySettings, Target, render_gateway
from mcgw.provisioning.bootstrap import XdsTarget

TARGET = Target("east", XdsTarget("198.18.0.1", 18000), read_template())
PLURALS = {"serviceaccounts": "ServiceAccount", "configmaps": "ConfigMap", "deployments": "Deployment",
           "services": "Service", "horizontalpodautoscalers": "HorizontalPodAutoscaler",
           "poddisruptionbudgets": "PodDisruptionBudget"}


class FakeApi(ProvisionApi):
    def __init__(self) -> None:
        super().__init__(cast(Any, None))
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.errors: dict[tuple[str, ObjectKey], ApiException] = {}
        self._uids = itertools.count(1)

    @staticmethod
    def key(path: str) -> ObjectKey:
        parts = path.strip("/").split("/")
        index = parts.index("namespaces")
        return PLURALS[parts[index + 2]], parts[index + 1], parts[index + 3]

    def _call(self, method: str, path: str) -> ObjectKey:
        key = self.key(path)
        self.calls.append((method, key[0]))
        if (error := self.errors.get((method, key))) is not None:
            raise error
        return key

    def put(self, obj: dict[str, Any]) -> None:
        """An object written by someone else."""
        stored = copy.deepcopy(obj)
        stored["metadata"]["uid"] = f"uid-{next(self._uids)}"
        self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = stored

    async def get(self, path: str) -> dict[str, Any] | None:
        key = self._call("GET", path)
        return copy.deepcopy(self.objects[key]) if key in self.objects else None

    async def apply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._call("APPLY", path)
        uid = self.objects[key]["metadata"]["uid"] if key in self.objects else f"uid-{next(self._uids)}"
        stored = copy.deepcopy(body)
        stored["metadata"]["uid"] = uid
        self.objects[key] = stored
        return copy.deepcopy(stored)

    async def delete(self, path: str, uid: str) -> bool:
        key = self._call("DELETE", path)
        if key not in self.objects or self.objects[key]["metadata"]["uid"] != uid:
            return False
        del self.objects[key]
        return True

    def observed(self) -> list[AnyObject]:
        """What the informers show."""
        shown = []
        for (kind, _, _), obj in sorted(self.objects.items()):
            labels = obj["metadata"].get("labels") or {}
            if kind == "Service" or labels.get("app.kubernetes.io/managed-by") == "mcgw":
                shown.append(parse_object(obj, "fake"))
        return shown


def _gateway(name: str = "public", ports: tuple[int, ...] = (80,), namespace: str = "infra") -> Gateway:
    parsed = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                           "metadata": {"name": name, "namespace": namespace, "uid": f"gw-{name}"},
                           "spec": {"gatewayClassName": "mcgw", "listeners": [
                               {"name": f"l{port}", "port": port, "protocol": "HTTP"} for port in ports]}}, "test")
    assert isinstance(parsed, Gateway)
    return parsed


def _desired(*gateways: Gateway, settings: ProxySettings | None = None) -> dict[ObjectKey, dict[str, Any]]:
    return {(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]): obj
            for gateway in gateways for obj in render_gateway(TARGET, gateway, settings or ProxySettings())}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


async def test_creates_a_gateways_objects_then_writes_nothing_while_they_are_in_place(api: FakeApi) -> None:
    provisioner = Provisioner(api, "east")
    desired = _desired(_gateway())
    report = await provisioner.sync(desired, set(), api.observed())
    assert report.applied == 4
    # In dependency order; objects the informers cannot show (not ours) are read first: they may be someone else's.
    assert [call for call in api.calls if call[0] == "APPLY"] == [
        ("APPLY", "ServiceAccount"), ("APPLY", "ConfigMap"), ("APPLY", "Deployment"), ("APPLY", "Service")]
    assert ("GET", "Service") not in api.calls  # Services are watched whole: absent means absent
    assert set(api.objects) == set(desired)
    api.calls.clear()
    again = await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert (again.applied, again.deleted, api.calls) == (0, 0, [])


async def test_a_listener_change_applies_the_service_alone(api: FakeApi) -> None:
    provisioner = Provisioner(api, "east")
    await provisioner.sync(_desired(_gateway()), set(), api.observed())
    deployment = copy.deepcopy(api.objects[("Deployment", "infra", "mcgw-public")])
    api.calls.clear()
    await provisioner.sync(_desired(_gateway(ports=(80, 8080))), set(), api.observed())
    assert api.calls == [("APPLY", "Service")]
    assert [p["port"] for p in api.objects[("Service", "infra", "mcgw-public")]["spec"]["ports"]] == [80, 8080]
    assert api.objects[("Deployment", "infra", "mcgw-public")] == deployment


async def test_an_edit_to_a_field_mcgw_reads_back_is_repaired(api: FakeApi) -> None:
    provisioner = Provisioner(api, "east")
    await provisioner.sync(_desired(_gateway()), set(), api.observed())
    api.objects[("Deployment", "infra", "mcgw-public")]["spec"]["replicas"] = 5  # kubectl scale
    api.objects[("Service", "infra", "mcgw-public")]["spec"]["ports"] = []  # kubectl edit
    api.calls.clear()
    await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert sorted(api.calls) == [("APPLY", "Deployment"), ("APPLY", "Service")]
    assert api.objects[("Deployment", "infra", "mcgw-public")]["spec"]["replicas"] == 1


async def test_someone_elses_object_is_never_touched_and_is_looked_at_again_later(api: FakeApi,
                                                                                   caplog: pytest.LogCaptureFixture
                                                                                   ) -> None:
    clock = Clock()
    provisioner = Provisioner(api, "east", clock=clock)
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mcgw-public", "namespace": "infra"},
               "data": {"theirs": "yes"}}
    api.put(foreign)
    with caplog.at_level(logging.WARNING):
        report = await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert report.foreign == [("ConfigMap", "infra", "mcgw-public")]
    assert api.objects[("ConfigMap", "infra", "mcgw-public")]["data"] == {"theirs": "yes"}
    assert "ConfigMap infra/mcgw-public exists and is not managed by mcgw" in caplog.text
    # Nothing else of that Gateway is written: its Deployment would mount their ConfigMap.
    assert list(api.objects) == [("ConfigMap", "infra", "mcgw-public")]
    # Not read again on every sync, and never deleted (it has no label of ours).
    api.calls.clear()
    report = await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert ("GET", "ConfigMap") not in api.calls
    assert report.foreign == [("ConfigMap", "infra", "mcgw-public")]
    await provisioner.sync({}, set(), api.observed())
    assert ("ConfigMap", "infra", "mcgw-public") in api.objects
    # Its owner deletes it; once the recheck is due, ours is created.
    await provisioner.sync(_desired(_gateway()), set(), api.observed())
    del api.objects[("ConfigMap", "infra", "mcgw-public")]
    clock.now += FOREIGN_RECHECK + 1
    report = await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert report.foreign == []
    assert api.objects[("ConfigMap", "infra", "mcgw-public")]["metadata"]["labels"]["app.kubernetes.io/managed-by"] \
        == "mcgw"


async def test_a_service_someone_else_owns_is_left_alone(api: FakeApi) -> None:
    api.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mcgw-public", "namespace": "infra"},
             "spec": {"ports": [{"port": 1}]}})
    report = await Provisioner(api, "east").sync(_desired(_gateway()), set(), api.observed())
    assert report.foreign == [("Service", "infra", "mcgw-public")]
    assert api.objects[("Service", "infra", "mcgw-public")]["spec"] == {"ports": [{"port": 1}]}


async def test_objects_no_longer_desired_are_deleted_others_stay(api: FakeApi) -> None:
    provisioner = Provisioner(api, "east")
    await provisioner.sync(_desired(_gateway("a"), _gateway("b"), _gateway("c")), set(), api.observed())
    # Someone's own object that carries the gateway-name label but not our managed-by label.
    api.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "notes", "namespace": "infra", "labels": {"gateway.networking.k8s.io/gateway-name": "a"}}})
    api.calls.clear()
    # a is deleted (or no longer ours); b's parameters cannot be used, so what it runs stays.
    report = await provisioner.sync(_desired(_gateway("c")), {("infra", "b")}, api.observed())
    assert report.deleted == 4
    assert api.calls == [("DELETE", "Service"), ("DELETE", "Deployment"), ("DELETE", "ConfigMap"),
                         ("DELETE", "ServiceAccount")]
    assert {name for _, _, name in api.objects} == {"mcgw-b", "mcgw-c", "notes"}


async def test_the_optional_objects_come_and_go_with_the_settings(api: FakeApi) -> None:
    from mcgw.provisioning import Autoscaling, DisruptionBudget

    provisioner = Provisioner(api, "east")
    scaled = ProxySettings(autoscaling=Autoscaling(2, 4), disruption_budget=DisruptionBudget(min_available=1))
    await provisioner.sync(_desired(_gateway(), settings=scaled), set(), api.observed())
    assert {kind for kind, _, _ in api.objects} >= {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert "replicas" not in api.objects[("Deployment", "infra", "mcgw-public")]["spec"]
    await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert {kind for kind, _, _ in api.objects} == {"ServiceAccount", "ConfigMap", "Deployment", "Service"}


async def test_a_replaced_object_is_not_deleted(api: FakeApi) -> None:
    provisioner = Provisioner(api, "east")
    await provisioner.sync(_desired(_gateway()), set(), api.observed())
    observed = api.observed()  # what the informers still show ...
    for key in list(api.objects):  # ... while every object was deleted and created again by someone
        api.put(api.objects.pop(key))
    report = await provisioner.sync({}, set(), observed)
    assert report.deleted == 0
    assert len(api.objects) == 4


async def test_a_replica_that_does_not_lead_writes_nothing(api: FakeApi) -> None:
    leading = False
    provisioner = Provisioner(api, "east", lambda: leading)
    report = await provisioner.sync(_desired(_gateway()), set(), api.observed())
    assert report.deferred
    assert api.calls == []
    leading = True
    assert (await provisioner.sync(_desired(_gateway()), set(), api.observed())).applied == 4


async def test_an_api_error_fails_that_object_alone_and_logs_no_body(api: FakeApi,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = '{"message": "bootstrap.yaml: secret-token-123 is invalid"}'
    api.errors[("APPLY", ("ConfigMap", "infra", "mcgw-public"))] = error
    with caplog.at_level(logging.WARNING):
        report = await Provisioner(api, "east").sync(_desired(_gateway()), set(), api.observed())
    assert (report.applied, report.failed) == (3, 1)
    assert "provisioning ConfigMap infra/mcgw-public failed: API answered 422 Unprocessable Entity" in caplog.text
    assert "secret-token-123" not in caplog.text
