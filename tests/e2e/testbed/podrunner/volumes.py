"""A pod's volumes: what each one holds (pure), and writing it the way a kubelet does (atomic updates).

ConfigMap, Secret, projected (ServiceAccount token, ConfigMap, Secret, downward API) and downwardAPI
volumes become a set of files; emptyDir an empty directory; hostPath a host directory. File sets are
written as the kubelet's atomic writer does: the files live in a timestamped directory, ``..data``
points at it, and each top-level name is a symlink through ``..data``; an update writes a new directory
and swaps the ``..data`` link in one rename, so a reader never sees half a change.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .spec import ConfigError, Json, Objects, PodAddresses, field_value, resource_value

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
# Without kube-controller-manager no kube-root-ca.crt ConfigMap is published; the cluster CA stands in.
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"


@dataclass(frozen=True)
class FileSet:
    files: Mapping[str, tuple[bytes, int]]


@dataclass(frozen=True)
class EmptyDir:
    pass


@dataclass(frozen=True)
class HostPath:
    path: str
    type: str = ""


Volume = FileSet | EmptyDir | HostPath


@dataclass(frozen=True)
class TokenRequest:
    service_account: str
    audience: str
    expiration_seconds: int


def token_requests(pod: Json) -> list[TokenRequest]:
    """The ServiceAccount tokens the pod's projected volumes need (one per audience and lifetime)."""
    account = pod.get("spec", {}).get("serviceAccountName") or "default"
    wanted: dict[tuple[str, int], TokenRequest] = {}
    for volume in pod.get("spec", {}).get("volumes", []) or []:
        for source in (volume.get("projected") or {}).get("sources", []) or []:
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                request = TokenRequest(account, token.get("audience", ""),
                                       int(token.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)))
                wanted[(request.audience, request.expiration_seconds)] = request
    return list(wanted.values())


def _items(kind: str, name: str, values: Mapping[str, bytes], items: list[Json] | None, mode: int,
           optional: bool) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, mode) for key, value in values.items()}
    files = {}
    for item in items:
        key = item["key"]
        if key not in values:
            if optional:
                continue
            raise ConfigError(f"{kind} {name!r} references non-existent config key: {key}", "ContainerCreating")
        files[_clean(item["path"])] = (values[key], int(item.get("mode", mode)))
    return files


def _clean(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or not path or path.startswith(".."):
        raise ConfigError(f"volume item path {path!r} must be relative, without '..'", "ContainerCreating")
    return path


def _config_map_values(config_map: Json) -> dict[str, bytes]:
    values = {key: str(value).encode() for key, value in (config_map.get("data") or {}).items()}
    values.update({key: base64.b64decode(value) for key, value in (config_map.get("binaryData") or {}).items()})
    return values


def _secret_values(secret: Json) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def _config_map(source: Json, objects: Objects, mode: int, root_ca: bytes) -> dict[str, tuple[bytes, int]]:
    name, optional = source.get("name", ""), bool(source.get("optional"))
    found = objects.config_maps.get(name)
    if found is None and name == ROOT_CA_CONFIG_MAP and root_ca:
        found = {"data": {"ca.crt": root_ca.decode()}}
    if found is None:
        if optional:
            return {}
        raise ConfigError(f'configmap "{name}" not found', "ContainerCreating")
    return _items("configmap", name, _config_map_values(found), source.get("items"), mode, optional)


def _secret(source: Json, name: str, objects: Objects, mode: int) -> dict[str, tuple[bytes, int]]:
    optional = bool(source.get("optional"))
    found = objects.secrets.get(name)
    if found is None:
        if optional:
            return {}
        raise ConfigError(f'secret "{name}" not found', "ContainerCreating")
    return _items("secret", name, _secret_values(found), source.get("items"), mode, optional)


def _downward(items: list[Json], pod: Json, addresses: PodAddresses, mode: int,
              allocatable: Mapping[str, str]) -> dict[str, tuple[bytes, int]]:
    files = {}
    for item in items or []:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], addresses)
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            containers = {c["name"]: c for c in pod.get("spec", {}).get("containers", [])}
            value = resource_value(containers.get(ref.get("containerName", ""), {}), ref["resource"],
                                   ref.get("divisor"), allocatable)
        else:
            continue
        files[_clean(item["path"])] = (value.encode(), int(item.get("mode", mode)))
    return files


def resolve_volume(volume: Json, pod: Json, objects: Objects, addresses: PodAddresses,
                   tokens: Mapping[tuple[str, int], str], root_ca: bytes = b"",
                   allocatable: Mapping[str, str] | None = None) -> Volume:
    """What ``volume`` holds now; raises ConfigError while something it needs is missing."""
    allocatable = allocatable or {}
    if "emptyDir" in volume:
        return EmptyDir()
    if "hostPath" in volume:
        return HostPath(volume["hostPath"]["path"], volume["hostPath"].get("type", ""))
    if "configMap" in volume:
        source = volume["configMap"]
        return FileSet(_config_map(source, objects, int(source.get("defaultMode", DEFAULT_MODE)), root_ca))
    if "secret" in volume:
        source = volume["secret"]
        return FileSet(_secret(source, source.get("secretName", ""), objects,
                               int(source.get("defaultMode", DEFAULT_MODE))))
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return FileSet(_downward(source.get("items", []), pod, addresses,
                                 int(source.get("defaultMode", DEFAULT_MODE)), allocatable))
    if "projected" in volume:
        projected = volume["projected"]
        mode = int(projected.get("defaultMode", DEFAULT_MODE))
        files: dict[str, tuple[bytes, int]] = {}
        for source in projected.get("sources", []) or []:
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                key = (token.get("audience", ""), int(token.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)))
                if key not in tokens:
                    raise ConfigError("waiting for a ServiceAccount token", "ContainerCreating")
                files[_clean(token.get("path", "token"))] = (tokens[key].encode(), mode)
            elif "configMap" in source:
                files.update(_config_map(source["configMap"], objects, mode, root_ca))
            elif "secret" in source:
                files.update(_secret(source["secret"], source["secret"].get("name", ""), objects, mode))
            elif "downwardAPI" in source:
                files.update(_downward(source["downwardAPI"].get("items", []), pod, addresses, mode, allocatable))
            else:
                raise ConfigError(f"projected volume {volume['name']!r}: unsupported source {sorted(source)}",
                                  "ContainerCreating")
        return FileSet(files)
    kinds = sorted(k for k in volume if k != "name")
    raise ConfigError(f"volume {volume.get('name')!r}: type {kinds} is not supported by the test bed's pod runner",
                      "ContainerCreating")


def read_only(volume: Json) -> bool:
    """ConfigMap, Secret, projected and downwardAPI volumes are always mounted read-only."""
    return any(kind in volume for kind in ("configMap", "secret", "projected", "downwardAPI"))


# I/O: writing volumes into the pod's directory.

def write_file_set(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make ``directory`` hold exactly ``files`` (atomically); returns whether anything changed."""
    directory.mkdir(parents=True, exist_ok=True)
    if _current(directory) == dict(files):
        return False
    stamp = directory / f"..{time.time_ns()}"
    stamp.mkdir()
    for relative, (content, mode) in files.items():
        path = stamp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    link = directory / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(stamp.name)
    previous = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    link.rename(directory / "..data")
    tops = {relative.split("/")[0] for relative in files}
    for top in tops:
        entry = directory / top
        if not entry.is_symlink():
            entry.symlink_to(f"..data/{top}")
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if previous:
        shutil.rmtree(directory / previous, ignore_errors=True)
    return True


def _current(directory: Path) -> dict[str, tuple[bytes, int]] | None:
    data = directory / "..data"
    if not data.is_symlink():
        return None
    root = directory / os.readlink(data)
    current = {}
    for path in root.rglob("*"):
        if path.is_file():
            current[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return current


def prepare_host_path(volume: HostPath) -> None:
    """hostPath types that create what is missing (DirectoryOrCreate, FileOrCreate)."""
    path = Path(volume.path)
    if volume.type == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif volume.type == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif volume.type in ("Directory", "File", "Socket", "CharDevice", "BlockDevice") and not path.exists():
        raise ConfigError(f"hostPath type check failed: {volume.path} does not exist", "ContainerCreating")
