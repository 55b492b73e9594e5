"""Reading manifests from disk: ``DIR/<cluster>/*.yaml`` plus an optional ``DIR/clusterset.yaml``.

Every document must parse; an error names the file and the document number. Nothing is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcgw.objects.clusterset import ClusterProperties, ClusterSetProperties, ConfigError, validation_problems
from mcgw.objects.model import AnyObject, ManifestError, parse_object

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_cluster_dir(directory: Path) -> list[AnyObject]:
    """Every object under ``directory``; the same kind/namespace/name twice is an error naming both places."""
    objects: list[AnyObject] = []
    seen: dict[tuple[str, str, str], str] = {}

    def add(item: object, source: str) -> None:
        parsed = parse_object(item, source)
        if parsed.key in seen:
            kind, namespace, name = parsed.key
            raise ManifestError(source, f"{kind} {namespace + '/' if namespace else ''}{name} is also defined in "
                                        f"{seen[parsed.key]}")
        seen[parsed.key] = source
        objects.append(parsed)

    for path in sorted(p for p in directory.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file()):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            raise ManifestError(str(path), f"not valid YAML: {error}") from None
        for number, document in enumerate(documents, start=1):
            if document is None:
                continue
            if isinstance(document, dict) and document.get("kind") == "List":
                for item_number, item in enumerate(document.get("items") or [], start=1):
                    add(item, f"{path} document {number} item {item_number}")
                continue
            add(document, f"{path} document {number}")
    return objects


def read_clusterset_dir(root: Path) -> tuple[ClusterSetProperties, dict[str, list[AnyObject]]]:
    """Cluster properties and each cluster's objects. Without clusterset.yaml every subdirectory is a cluster."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    subdirectories = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    config_path = root / "clusterset.yaml"
    if config_path.exists():
        properties = load_clusterset(config_path)
        declared = [c.name for c in properties.clusters]
        if missing := sorted(set(declared) - set(subdirectories)):
            raise ConfigError(f"{config_path}: clusters without a directory in {root}: {', '.join(missing)}")
        if undeclared := sorted(set(subdirectories) - set(declared)):
            raise ConfigError(f"{config_path}: directories not listed as clusters: {', '.join(undeclared)}")
    else:
        properties = ClusterSetProperties(clusters=tuple(ClusterProperties(name=name) for name in subdirectories))
    if not properties.clusters:
        raise ConfigError(f"{root}: no cluster directories found (expected {root}/<cluster>/*.yaml)")
    return properties, {c.name: read_cluster_dir(root / c.name) for c in properties.clusters}


def read_config_yaml(path: Path) -> Any:
    """A small YAML configuration file; ConfigError naming the file if it cannot be read or parsed."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None


def load_clusterset(path: Path) -> ClusterSetProperties:
    data = read_config_yaml(path)
    try:
        return ClusterSetProperties.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {validation_problems(error)}") from None
