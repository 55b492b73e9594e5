"""Volume contents (ConfigMap, Secret, projected, downward API) and the kubelet-style atomic writer."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.testbed.podrunner.spec import ConfigError, Objects, PodAddresses
from tests.e2e.testbed.podrunner.volumes import (
    EmptyDir,
    FileSet,
    HostPath,
    TokenRequest,
    read_only,
    resolve_volume,
    token_requests,
    write_file_set,
)

ADDRESSES = PodAddresses("198.18.1.130", "198.18.0.1")
POD: dict[str, Any] = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"a": "1", "b": "2"}},
                       "spec": {"serviceAccountName": "robot", "containers": [{"name": "c"}]}}
OBJECTS = Objects(
    {"settings": {"data": {"color": "blue", "size": "10"}, "binaryData": {"blob": base64.b64encode(b"\0\1").decode()}},
     "gone": None},
    {"creds": {"data": {"tls.crt": base64.b64encode(b"CERT").decode(), "tls.key": base64.b64encode(b"KEY").decode()}},
     "gone": None})


def _files(volume: dict[str, Any], tokens: dict[tuple[str, int], str] | None = None,
           objects: Objects = OBJECTS) -> dict[str, tuple[bytes, int]]:
    content = resolve_volume(volume, POD, objects, ADDRESSES, tokens or {}, b"CLUSTER-CA")
    assert isinstance(content, FileSet)
    return dict(content.files)


def test_config_map_whole_and_with_items() -> None:
    assert _files({"name": "v", "configMap": {"name": "settings"}}) == {
        "color": (b"blue", 0o644), "size": (b"10", 0o644), "blob": (b"\0\1", 0o644)}
    assert _files({"name": "v", "configMap": {"name": "settings", "defaultMode": 0o600,
                                              "items": [{"key": "color", "path": "dir/c"},
                                                        {"key": "size", "path": "s", "mode": 0o444}]}}) == {
        "dir/c": (b"blue", 0o600), "s": (b"10", 0o444)}


def test_secret_with_items_and_default_mode() -> None:
    volume = {"name": "v", "secret": {"secretName": "creds", "defaultMode": 0o400,
                                      "items": [{"key": "tls.crt", "path": "crt"}, {"key": "tls.key", "path": "key"}]}}
    assert _files(volume) == {"crt": (b"CERT", 0o400), "key": (b"KEY", 0o400)}


@pytest.mark.parametrize("volume", [
    {"name": "v", "configMap": {"name": "gone"}},
    {"name": "v", "secret": {"secretName": "gone"}},
    {"name": "v", "configMap": {"name": "settings", "items": [{"key": "nope", "path": "x"}]}},
    {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
    {"name": "v", "persistentVolumeClaim": {"claimName": "data"}},
    {"name": "v", "configMap": {"name": "settings", "items": [{"key": "color", "path": "../escape"}]}},
])
def test_what_is_missing_keeps_the_pod_creating(volume: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_volume(volume, POD, OBJECTS, ADDRESSES, {})
    assert raised.value.reason == "ContainerCreating"


def test_optional_sources_may_be_missing() -> None:
    assert _files({"name": "v", "configMap": {"name": "gone", "optional": True}}) == {}
    assert _files({"name": "v", "secret": {"secretName": "gone", "optional": True}}) == {}
    assert _files({"name": "v", "configMap": {"name": "settings", "optional": True,
                                              "items": [{"key": "nope", "path": "x"}]}}) == {}


def test_service_account_volume_as_admission_writes_it() -> None:
    volume = {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}}
    pod = {**POD, "spec": {**POD["spec"], "volumes": [volume]}}
    assert token_requests(pod) == [TokenRequest("robot", "", 3607)]
    # Without kube-controller-manager there is no kube-root-ca.crt ConfigMap: the cluster CA stands in.
    assert _files(volume, {("", 3607): "TOKEN"}) == {
        "token": (b"TOKEN", 420), "ca.crt": (b"CLUSTER-CA", 420), "namespace": (b"shop", 420)}
    published = Objects({"kube-root-ca.crt": {"data": {"ca.crt": "PUBLISHED-CA"}}})
    assert _files(volume, {("", 3607): "TOKEN"}, published)["ca.crt"] == (b"PUBLISHED-CA", 420)


def test_downward_api_volume() -> None:
    volume = {"name": "v", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}, "mode": 0o600}]}}
    assert _files(volume) == {"labels": (b'a="1"\nb="2"', 0o644), "ip": (b"198.18.1.130", 0o600)}


def test_other_kinds() -> None:
    assert resolve_volume({"name": "v", "emptyDir": {}}, POD, OBJECTS, ADDRESSES, {}) == EmptyDir()
    assert resolve_volume({"name": "v", "hostPath": {"path": "/srv", "type": "Directory"}}, POD, OBJECTS, ADDRESSES,
                          {}) == HostPath("/srv", "Directory")
    assert read_only({"name": "v", "secret": {}})
    assert read_only({"name": "v", "projected": {}})
    assert not read_only({"name": "v", "emptyDir": {}})


def test_atomic_writer_layout_and_updates(tmp_path: Path) -> None:
    volume = tmp_path / "settings"
    assert write_file_set(volume, {"color": (b"blue", 0o644), "dir/size": (b"10", 0o600)})
    assert (volume / "color").read_bytes() == b"blue"
    assert (volume / "dir" / "size").read_bytes() == b"10"
    assert os.readlink(volume / "color") == "..data/color"
    first = os.readlink(volume / "..data")
    assert (volume / first / "dir" / "size").stat().st_mode & 0o777 == 0o600
    assert not write_file_set(volume, {"color": (b"blue", 0o644), "dir/size": (b"10", 0o600)})  # unchanged
    assert write_file_set(volume, {"color": (b"red", 0o644)})
    assert (volume / "color").read_bytes() == b"red"
    assert not (volume / "dir").exists()
    assert not (volume / first).exists()
    assert sorted(p.name for p in volume.iterdir() if not p.name.startswith("..")) == ["color"]
