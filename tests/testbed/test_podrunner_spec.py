"""The pod runner's resolution of a Pod spec: ``$(VAR)`` expansion, env sources, resources, mounts, argv."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.e2e.testbed.podrunner.images import Image
from tests.e2e.testbed.podrunner.spec import (
    ConfigError,
    Mount,
    Objects,
    PodAddresses,
    container_mounts,
    expand,
    field_value,
    launch_plan,
    quantity,
    referenced_objects,
    resolve_env,
    resource_value,
    service_env,
)

ADDRESSES = PodAddresses("198.18.1.130", "198.18.0.1")


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "1234-abcd", "labels": {"tier": "gold"},
                         "annotations": {"note": 'say "hi"'}},
            "spec": {"nodeName": "east-node", "serviceAccountName": "robot", "containers": [{"name": "c"}], **spec}}


def _secret(**values: str) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("$(A)", "alpha"),
    ("x-$(A)-$(B)-y", "x-alpha-beta-y"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"),
    ("$$", "$"),
    ("cost $5", "cost $5"),
    ("$(A", "$(A"),
    ("trailing $", "trailing $"),
    ("$()", "$()"),
])
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "alpha", "B": "beta"}) == expected


def test_field_refs() -> None:
    pod = _pod()
    assert field_value(pod, "metadata.name", ADDRESSES) == "web-1"
    assert field_value(pod, "metadata.namespace", ADDRESSES) == "shop"
    assert field_value(pod, "metadata.uid", ADDRESSES) == "1234-abcd"
    assert field_value(pod, "spec.nodeName", ADDRESSES) == "east-node"
    assert field_value(pod, "spec.serviceAccountName", ADDRESSES) == "robot"
    assert field_value(pod, "status.podIP", ADDRESSES) == "198.18.1.130"
    assert field_value(pod, "status.hostIP", ADDRESSES) == "198.18.0.1"
    assert field_value(pod, "metadata.labels['tier']", ADDRESSES) == "gold"
    assert field_value(pod, 'metadata.labels["absent"]', ADDRESSES) == ""
    assert field_value(pod, "metadata.annotations", ADDRESSES) == 'note="say \\"hi\\""'
    with pytest.raises(ConfigError):
        field_value(pod, "status.phase", ADDRESSES)


def test_env_sources_in_kubelet_order() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"},
                    {"secretRef": {"name": "creds"}},
                    {"configMapRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "GREETING", "value": "hi $(CM_color) from $(POD)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LATER", "value": "$(POD)"},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "NOPE", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": True}}},
            {"name": "user", "value": "overridden"},
        ],
    }
    objects = Objects({"settings": {"data": {"color": "blue"}}, "absent": None}, {"creds": _secret(token="t0k",
                                                                                                 user="bob")})
    env = resolve_env(_pod(), container, objects, ADDRESSES, base={"PATH": "/bin", "user": "base"})
    assert env == {"PATH": "/bin", "user": "overridden", "CM_color": "blue", "token": "t0k",
                   "GREETING": "hi blue from $(POD)", "POD": "web-1", "LATER": "web-1", "COLOR": "blue",
                   "TOKEN": "t0k"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"configMapKeyRef": {"name": "nothing", "key": "k"}}, 'configmap "nothing" not found'),
    ({"configMapKeyRef": {"name": "settings", "key": "k"}}, "couldn't find key k in ConfigMap shop/settings"),
    ({"secretKeyRef": {"name": "nothing", "key": "k"}}, 'secret "nothing" not found'),
    ({"secretKeyRef": {"name": "creds", "key": "k"}}, "couldn't find key k in Secret shop/creds"),
])
def test_missing_env_sources_are_config_errors(entry: dict[str, Any], message: str) -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": entry}]}
    objects = Objects({"settings": {"data": {}}, "nothing": None}, {"creds": _secret(), "nothing": None})
    with pytest.raises(ConfigError) as raised:
        resolve_env(_pod(), container, objects, ADDRESSES)
    assert raised.value.reason == "CreateContainerConfigError"
    assert raised.value.message == message


def test_optional_missing_sources_are_skipped() -> None:
    container = {"name": "c", "env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nothing", "key": "k", "optional": True}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": True}}}],
        "envFrom": [{"secretRef": {"name": "nothing", "optional": True}}]}
    assert resolve_env(_pod(), container, Objects({"nothing": None}, {"creds": _secret(), "nothing": None}),
                       ADDRESSES) == {}


@pytest.mark.parametrize(("text", "value"), [("100m", "1/10"), ("2", "2"), ("1Ki", "1024"), ("1.5Gi", "1610612736"),
                                             ("2e3", "2000"), ("500u", "1/2000")])
def test_quantity(text: str, value: str) -> None:
    assert str(quantity(text)) == value


def test_resource_field_refs() -> None:
    container = {"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1500m"}}}
    allocatable = {"cpu": "2", "memory": "8Gi"}
    assert resource_value(container, "requests.cpu", None, allocatable) == "1"  # rounded up to whole cores
    assert resource_value(container, "requests.cpu", "1m", allocatable) == "250"
    assert resource_value(container, "limits.cpu", None, allocatable) == "2"
    assert resource_value(container, "requests.memory", "1Mi", allocatable) == "64"
    assert resource_value(container, "limits.memory", "1Gi", allocatable) == "8"  # no limit: node allocatable
    with pytest.raises(ConfigError):
        resource_value(container, "cpu", None, allocatable)


def test_referenced_objects() -> None:
    pod = _pod(containers=[{"name": "c", "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "b"}}],
                            "env": [{"name": "x", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                                    {"name": "y", "valueFrom": {"secretKeyRef": {"name": "d", "key": "k"}}}]}],
               volumes=[{"name": "v1", "configMap": {"name": "e"}}, {"name": "v2", "secret": {"secretName": "f"}},
                        {"name": "v3", "projected": {"sources": [{"configMap": {"name": "g"}},
                                                                 {"secret": {"name": "h"}},
                                                                 {"serviceAccountToken": {"path": "token"}}]}}])
    assert referenced_objects(pod) == ({"a", "c", "e", "g"}, {"b", "d", "f", "h"})


def test_mounts_honour_sub_paths_and_read_only() -> None:
    container = {"name": "c", "volumeMounts": [
        {"name": "config", "mountPath": "/etc/envoy/bootstrap.yaml", "subPath": "bootstrap.yaml"},
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "data", "mountPath": "/per-pod", "subPathExpr": "$(POD)"}]}
    paths = {"config": "/state/config", "data": "/state/data"}
    assert container_mounts(container, paths, ["config"], {"POD": "web-1"}) == [
        Mount("/state/config/bootstrap.yaml", "/etc/envoy/bootstrap.yaml", True),
        Mount("/state/data", "/data", True),
        Mount("/state/data/web-1", "/per-pod", False)]
    with pytest.raises(ConfigError):
        container_mounts({"volumeMounts": [{"name": "other", "mountPath": "/x"}]}, paths, [], {})
    with pytest.raises(ConfigError):
        container_mounts({"volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "../up"}]}, paths, [], {})


def test_launch_plan_expands_command_and_args_with_the_final_env() -> None:
    image = Image("example/app", entrypoint=("/app",), cmd=("--default",), working_dir="/srv",
                  binaries={"/app": "/host/app", "tool": "/host/tool"})
    env = {"POD": "web-1", "PORT": "80"}
    container: dict[str, Any] = {"name": "c", "args": ["--name=$(POD)", "--port", "$(PORT)"]}
    plan = launch_plan(_pod(), container, image, env, {})
    assert plan.argv == ["/host/app", "--name=web-1", "--port", "80"]
    assert plan.working_dir == "/srv"
    assert plan.hostname == "web-1"
    container = {"name": "c", "command": ["tool", "$(POD)"], "workingDir": "/tmp"}
    plan = launch_plan(_pod(), container, image, env, {})
    assert plan.argv == ["/host/tool", "web-1"]
    assert plan.working_dir == "/tmp"
    assert launch_plan(_pod(), {"name": "c"}, image, env, {}).argv == ["/host/app", "--default"]
    with pytest.raises(ConfigError):
        launch_plan(_pod(), {"name": "c"}, Image("empty/image"), env, {})


def test_launch_plan_carries_a_read_only_root_filesystem() -> None:
    image = Image("example/app", entrypoint=("/app",))
    secure = {"name": "c", "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 65532}}
    assert launch_plan(_pod(), secure, image, {}, {}).read_only_root is True
    assert launch_plan(_pod(), {"name": "c"}, image, {}, {}).read_only_root is False


def test_service_env_points_at_the_api_server() -> None:
    env = service_env("127.0.0.1", 6443)
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert env["KUBERNETES_PORT"] == "tcp://127.0.0.1:6443"
