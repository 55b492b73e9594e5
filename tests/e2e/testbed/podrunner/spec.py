"""From a Pod's spec to a launch plan, as a kubelet resolves it: env, ``$(VAR)``, command and mounts.

Pure: the ConfigMaps and Secrets a pod refers to are fetched by the caller (``Objects``), so every rule
here is a function of its inputs. A reference that cannot be resolved raises :class:`ConfigError`, which
the caller reports as the container's waiting reason.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .images import Image, container_argv

Json = dict[str, Any]


class ConfigError(Exception):
    """The container cannot be created yet; ``reason`` is what its Waiting state says."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Objects:
    """The ConfigMaps and Secrets of the pod's namespace that it refers to; ``None`` means not found."""

    config_maps: Mapping[str, Json | None] = field(default_factory=dict)
    secrets: Mapping[str, Json | None] = field(default_factory=dict)


@dataclass(frozen=True)
class PodAddresses:
    pod_ip: str
    host_ip: str


@dataclass(frozen=True)
class Mount:
    """A bind mount inside the container: ``source`` on the host onto ``target`` as the pod spec wrote it."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    mounts: list[Mount]
    hostname: str
    # securityContext.readOnlyRootFilesystem: everything but the writable volumes, /dev, /proc and /sys.
    read_only_root: bool = False
    # The image's own directories (Image.files), laid in before the volumes, read-only.
    image_files: list[Mount] = field(default_factory=list)


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, unknown ones stay as written,
    ``$$`` is a literal ``$`` (so ``$$(VAR)`` reads ``$(VAR)``)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 == n:
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append(text[i:])
                break
            name = text[i + 2:close]
            out.append(variables[name] if name in variables else text[i:close + 1])
            i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\[['\"](.+)['\"]\]$")


def field_value(pod: Json, path: str, addresses: PodAddresses) -> str:
    """The downward API's fieldRef values."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", "default"),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": addresses.pod_ip,
        "status.podIPs": addresses.pod_ip,
        "status.hostIP": addresses.host_ip,
        "status.hostIPs": addresses.host_ip,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1], {}) or {}
        return "\n".join(f'{key}="{escape_downward(value)}"' for key, value in sorted(values.items()))
    match = _SUBSCRIPT.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def escape_downward(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_SUFFIXES = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
             "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
             "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
             "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60)}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def quantity(text: str | int | float) -> Fraction:
    """A resource.Quantity (``100m``, ``1Gi``, ``2e3``) as an exact number."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ConfigError(f"invalid quantity {text!r}")
    number = Fraction(match.group(1))
    if match.group(2):
        return number * Fraction(10) ** int(match.group(2)[1:])
    return number * _SUFFIXES[match.group(3) or ""]


def resource_value(container: Json, resource: str, divisor: str | None, allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef: the container's request or limit, a limit defaulting to the node's allocatable."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources", {}) or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name, "0")
    if value is None:
        value = allocatable.get(name, "0")
    scaled = quantity(value) / quantity(divisor or "1")
    return str(math.ceil(scaled))


def _decoded(secret: Json) -> dict[str, str]:
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in (secret.get("data") or {}).items()}


def _lookup_key(kind: str, namespace: str, name: str, key: str, source: Json | None, optional: bool) -> str | None:
    if source is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    values = _decoded(source) if kind == "Secret" else dict(source.get("data") or {})
    if key not in values:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return values[key]


def resolve_env(pod: Json, container: Json, objects: Objects, addresses: PodAddresses,
                base: Mapping[str, str] | None = None, allocatable: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's environment: ``base`` (image and runtime variables), then envFrom, then env, each
    value expanded against what came before it."""
    namespace = pod.get("metadata", {}).get("namespace", "default")
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind, table = source["configMapRef"], "ConfigMap", objects.config_maps
        elif "secretRef" in source:
            ref, kind, table = source["secretRef"], "Secret", objects.secrets
        else:
            continue
        found = table.get(ref.get("name", ""))
        if found is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
        values = _decoded(found) if kind == "Secret" else dict(found.get("data") or {})
        for key, text in values.items():
            env[prefix + key] = text
    for entry in container.get("env", []) or []:
        name = entry["name"]
        value: str | None
        if "valueFrom" not in entry:
            env[name] = expand(str(entry.get("value", "")), env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"], addresses)
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            target = _container_named(pod, ref.get("containerName")) or container
            value = resource_value(target, ref["resource"], ref.get("divisor"), allocatable or {})
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            value = _lookup_key("ConfigMap", namespace, ref["name"], ref["key"], objects.config_maps.get(ref["name"]),
                                bool(ref.get("optional")))
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = _lookup_key("Secret", namespace, ref["name"], ref["key"], objects.secrets.get(ref["name"]),
                                bool(ref.get("optional")))
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def _container_named(pod: Json, name: str | None) -> Json | None:
    if not name:
        return None
    spec = pod.get("spec", {})
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == name:
            return dict(container)
    return None


def referenced_objects(pod: Json) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's containers and volumes refer to."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec", {})
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in container.get("envFrom", []) or []:
            if "configMapRef" in source:
                config_maps.add(source["configMapRef"].get("name", ""))
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
        for entry in container.get("env", []) or []:
            value_from = entry.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                config_maps.add(value_from["configMapKeyRef"]["name"])
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"]["name"])
    for volume in spec.get("volumes", []) or []:
        if "configMap" in volume:
            config_maps.add(volume["configMap"].get("name", ""))
        if "secret" in volume:
            secrets.add(volume["secret"].get("secretName", ""))
        for source in (volume.get("projected") or {}).get("sources", []) or []:
            if "configMap" in source:
                config_maps.add(source["configMap"].get("name", ""))
            if "secret" in source:
                secrets.add(source["secret"].get("name", ""))
    return config_maps, secrets


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The ``kubernetes`` Service's variables every container gets, pointing at where the API server
    is reachable from inside the pod."""
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": f"tcp://{api_host}:{api_port}",
        f"KUBERNETES_PORT_{api_port}_TCP": f"tcp://{api_host}:{api_port}",
        f"KUBERNETES_PORT_{api_port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{api_port}_TCP_PORT": str(api_port),
        f"KUBERNETES_PORT_{api_port}_TCP_ADDR": api_host,
    }


def hostname(pod: Json) -> str:
    spec = pod.get("spec", {})
    return str(spec.get("hostname") or pod["metadata"]["name"])[:63]


def container_mounts(container: Json, volume_paths: Mapping[str, str], read_only_volumes: Sequence[str],
                     env: Mapping[str, str]) -> list[Mount]:
    """The container's volumeMounts as bind mounts from the pod's volume directories (subPath honoured)."""
    mounts = []
    for mount in container.get("volumeMounts", []) or []:
        name = mount["name"]
        if name not in volume_paths:
            raise ConfigError(f"volumeMount {name!r} names no volume of the pod", "CreateContainerConfigError")
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
        if sub_path.startswith("/") or ".." in sub_path.split("/"):
            raise ConfigError(f"subPath {sub_path!r} must be a relative path without '..'")
        source = volume_paths[name] + (f"/{sub_path}" if sub_path else "")
        read_only = bool(mount.get("readOnly")) or name in read_only_volumes
        mounts.append(Mount(source, mount["mountPath"], read_only))
    return mounts


def launch_plan(pod: Json, container: Json, image: Image, env: Mapping[str, str],
                volume_paths: Mapping[str, str], read_only_volumes: Sequence[str] = (),
                extra_mounts: Sequence[Mount] = ()) -> LaunchPlan:
    """Everything needed to start the container's process: argv (command/args expanded), env, cwd, mounts."""
    command = [expand(str(arg), env) for arg in container.get("command", []) or []]
    args = [expand(str(arg), env) for arg in container.get("args", []) or []]
    argv = container_argv(image, command, args)
    if not argv:
        raise ConfigError("no command specified", "CreateContainerError")
    mounts = [*extra_mounts, *container_mounts(container, volume_paths, read_only_volumes, env)]
    read_only_root = bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))
    image_files = [Mount(source, target, True) for target, source in sorted(image.files.items())]
    return LaunchPlan(argv, dict(env), container.get("workingDir") or image.working_dir, mounts, hostname(pod),
                      read_only_root, image_files)


def image_env(image: Image, pod: Json) -> dict[str, str]:
    """What a runtime sets before the pod's own variables: the image's ENV, HOSTNAME and HOME."""
    return {**dict(image.env), "HOSTNAME": hostname(pod), "HOME": "/root"}
