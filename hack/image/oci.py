"""The OCI image layout (image-spec v1.1) and the ``docker load`` archive made from it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from . import layers

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
CREATED = "1970-01-01T00:00:00Z"  # fixed, so that the same layers give the same image digest


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def image_config(*, env: dict[str, str], user: str, workdir: str, entrypoint: list[str] | None,
                 cmd: list[str] | None, labels: dict[str, str], diff_ids: list[str],
                 history: list[dict[str, object]]) -> dict[str, Any]:
    config: dict[str, Any] = {"Env": [f"{key}={value}" for key, value in env.items()], "WorkingDir": workdir}
    if user:
        config["User"] = user
    if entrypoint is not None:
        config["Entrypoint"] = entrypoint
    if cmd is not None:
        config["Cmd"] = cmd
    if labels:
        config["Labels"] = labels
    return {"created": CREATED, "architecture": _arch(), "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": CREATED, **entry} for entry in history]}


def _put(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(output: Path, config: dict[str, Any], image_layers: list[layers.Layer], *, tag: str) -> str:
    """Write the image at ``output`` (replacing what was there); return the manifest's digest."""
    if output.exists():
        shutil.rmtree(output)
    blobs = output / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (output / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_descriptors = []
    for layer in image_layers:
        target = blobs / layer.digest.split(":")[1]
        if not target.exists():
            try:
                os.link(layer.path, target)
            except OSError:
                shutil.copyfile(layer.path, target)
        layer_descriptors.append({"mediaType": LAYER, "digest": layer.digest, "size": layer.size})
    config_descriptor = {"mediaType": CONFIG, **_put(blobs, _canonical(config))}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_descriptor, "layers": layer_descriptors}
    manifest_descriptor = {"mediaType": MANIFEST, **_put(blobs, _canonical(manifest)),
                           "platform": {"architecture": config["architecture"], "os": config["os"]},
                           "annotations": {"org.opencontainers.image.ref.name": tag.rpartition(":")[2],
                                           "io.containerd.image.name": tag}}
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest_descriptor]}
    (output / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return str(manifest_descriptor["digest"])


def write_docker_archive(layout: Path, archive: Path, *, tag: str) -> None:
    """The layout as one tar with the ``manifest.json`` that ``docker load`` reads (as ``docker save`` writes)."""
    image = read_layout(layout)
    manifest = [{"Config": f"blobs/sha256/{image.manifest['config']['digest'].split(':')[1]}",
                 "RepoTags": [tag],
                 "Layers": [f"blobs/sha256/{layer['digest'].split(':')[1]}" for layer in image.manifest["layers"]]}]
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=path.relative_to(layout).as_posix(), recursive=False)
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    os.replace(partial, archive)


class LayoutError(ValueError):
    """The layout is not a valid OCI image: the message says which blob or field."""


class Image:
    def __init__(self, layout: Path, index: dict[str, Any], manifest: dict[str, Any], config: dict[str, Any]) -> None:
        self.layout = layout
        self.index = index
        self.manifest = manifest
        self.config = config

    def blob(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / digest.split(":")[1]

    def unpack(self, root: Path) -> None:
        """Apply the layers in order onto ``root``, as a runtime prepares a container's root filesystem."""
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        for layer in self.manifest["layers"]:
            layers.apply(self.blob(layer["digest"]), root)


def _verified(layout: Path, descriptor: dict[str, Any]) -> bytes:
    path = layout / "blobs" / "sha256" / str(descriptor["digest"]).split(":")[1]
    data: bytes = path.read_bytes()
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != descriptor["digest"] or len(data) != descriptor["size"]:
        raise LayoutError(f"blob {descriptor['digest']} does not match its digest or size")
    return data


def read_layout(layout: Path) -> Image:
    """Read and check an image layout with one image: every digest, size and layer diff_id."""
    if json.loads((layout / "oci-layout").read_text()) != {"imageLayoutVersion": "1.0.0"}:
        raise LayoutError("oci-layout is not imageLayoutVersion 1.0.0")
    index = json.loads((layout / "index.json").read_text())
    if index.get("schemaVersion") != 2 or len(index.get("manifests", [])) != 1:
        raise LayoutError("index.json must hold schemaVersion 2 and one manifest")
    descriptor = index["manifests"][0]
    if descriptor.get("mediaType") != MANIFEST:
        raise LayoutError(f"the index names a {descriptor.get('mediaType')}, not an image manifest")
    manifest = json.loads(_verified(layout, descriptor))
    if manifest.get("config", {}).get("mediaType") != CONFIG:
        raise LayoutError("the manifest's config is not an OCI image config")
    config = json.loads(_verified(layout, manifest["config"]))
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise LayoutError("the config's diff_ids and the manifest's layers differ in number")
    for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        if layer.get("mediaType") != LAYER:
            raise LayoutError(f"layer {layer['digest']} is {layer.get('mediaType')}, not {LAYER}")
        _verified(layout, layer)
        plain = hashlib.sha256()
        with gzip.open(layout / "blobs" / "sha256" / layer["digest"].split(":")[1]) as content:
            while chunk := content.read(1 << 20):
                plain.update(chunk)
        if f"sha256:{plain.hexdigest()}" != diff_id:
            raise LayoutError(f"layer {layer['digest']} does not unpack to its diff_id {diff_id}")
    return Image(layout, index, manifest, config)
