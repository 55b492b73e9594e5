"""Reading manifests from disk: ``DIR/<cluster>/*.yaml`` plus an optional ``DIR/clusterset.yaml``.

Every document must parse; an error names the file and the document number. An object the model refuses
(a bad enum value, a number where a string belongs) is rejected alone, as an API server takes each object
of a file on its own: it is reported, naming the file, the document and the field, and the others load.
Fields set to null are pruned first. A kind mcgw does not read is skipped and listed (with the file, the
document and the kind, and whether it is a Gateway API or MCS kind mcgw does not serve), never fatal: the
rest of the directory is served.

A file is untrusted input: it is refused past ``FileLimits.max_bytes``, and a document whose aliases
would expand past ``FileLimits.max_alias_nodes`` is refused after composing and before constructing,
so a small YAML "billion laughs" never reaches memory. Error messages quote no file content (a YAML
error's snippet could be a line of a Secret's key): only the file, line, column and the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcgw.objects.clusterset import ClusterProperties, ClusterSetProperties, ConfigError, validation_problems
from mcgw.objects.kinds import UNPROVISIONED_KINDS
from mcgw.objects.model import AnyObject, ManifestError, parse_object

# What manifest files hold: every registered kind but those provisioning generates in member clusters.
FILE_KINDS = tuple(kind.name for kind in UNPROVISIONED_KINDS)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# libyaml's parser where PyYAML was built with it: about three times faster than the pure-Python one.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


@dataclass(frozen=True)
class FileLimits:
    """What one manifest file may cost to read. The defaults are far above any real Gateway API file."""

    max_bytes: int = 10 * 1024 * 1024
    # Nodes that aliases add when expanded (a document's size with every alias replaced by what it
    # names, less its size as written). Real manifests use few aliases; a YAML bomb adds billions.
    max_alias_nodes: int = 1_000_000
    # Nodes as written (scalars and collections) in one file: each costs a few hundred bytes while the
    # file is composed, so 10 MB of ``a,a,a,…`` would take about 2 GB. An HTTPRoute of 1,000 rules x 64
    # matches has about 500,000.
    max_nodes: int = 1_500_000


DEFAULT_LIMITS = FileLimits()


@dataclass(frozen=True)
class Rejected:
    """A document the model refused: why (file, document, field), and which object it meant, if it says."""

    error: ManifestError
    key: tuple[str, str, str] | None

    @property
    def message(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class FileContents:
    """The objects of one file with where each came from, the documents skipped for their kind, and those
    the model rejected."""

    objects: tuple[AnyObject, ...]
    sources: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    rejected: tuple[Rejected, ...] = ()


def _intended_key(item: dict[Any, Any]) -> tuple[str, str, str] | None:
    """The (kind, namespace, name) a refused document names, when they are strings, so that the object's last
    good version can stand in for it."""
    metadata = item.get("metadata")
    if not isinstance(metadata, dict):
        return None
    kind, namespace, name = item.get("kind"), metadata.get("namespace") or "", metadata.get("name")
    if isinstance(kind, str) and isinstance(namespace, str) and isinstance(name, str):
        return kind, namespace, name
    return None


_QUOTED = re.compile(r"'[^']{17,}'|\"[^\"]{17,}\"")


def _problem_text(text: str | None) -> str:
    """A parser's problem text without any long quoted token, which could be part of a value."""
    return _QUOTED.sub("'…'", text or "").strip()


def _kind_text(kind: object) -> str:
    """An unsupported ``kind`` as it can be shown: a short name quoted, anything else by its type only."""
    if isinstance(kind, str) and len(kind) <= 63 and kind.isprintable():
        return repr(kind)
    return "(missing)" if kind is None else f"(a {type(kind).__name__} value)"


# API groups whose kinds mcgw reads some of: a kind of theirs it does not read is one it does not serve.
_SERVED_GROUPS = ("gateway.networking.k8s.io", "gateway.networking.x-k8s.io", "multicluster.x-k8s.io")


def _unread_kind(item: dict[Any, Any]) -> str:
    """Why a document of a kind mcgw does not read is skipped, naming the kind and, for the APIs mcgw
    implements, saying that it is not served (a GRPCRoute is not a typo)."""
    api_version = item.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    if group in _SERVED_GROUPS and isinstance(item.get("kind"), str):
        return f"{_kind_text(item['kind'])} of {group} is not served by mcgw"
    return f"unsupported kind {_kind_text(item.get('kind'))}"


def _yaml_error_message(error: yaml.YAMLError) -> str:
    """Where and what, never the snippet: PyYAML's ``str(error)`` quotes the offending line."""
    if isinstance(error, yaml.MarkedYAMLError):
        parts = []
        if error.context:
            where = (f" started at line {error.context_mark.line + 1}, column {error.context_mark.column + 1}"
                     if error.context_mark is not None else "")
            parts.append(f"{_problem_text(error.context)}{where}")
        if error.problem:
            where = (f"line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}: "
                     if error.problem_mark is not None else "")
            parts.append(f"{where}{_problem_text(error.problem)}")
        return "; ".join(parts) or type(error).__name__
    if isinstance(error, yaml.reader.ReaderError):
        character = error.character if isinstance(error.character, int) else ord(error.character)
        return f"unacceptable character #x{character:04x} at character {error.position}"
    return type(error).__name__


SELF_REFERENCE = -1  # an alias inside the node it names: endless when expanded


def _expanded_alias_nodes(root: yaml.Node) -> int:
    """How many nodes aliases add to ``root`` when expanded, or SELF_REFERENCE.

    An alias is the very node object it names, so the expanded size of each distinct node is computed
    once (iteratively: no recursion limit) and the bomb's exponential size is known without building it.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children: list[yaml.Node]
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        else:
            sizes[key] = 1
            continue
        if children_done:
            in_progress.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            continue
        if key in in_progress:
            return SELF_REFERENCE
        in_progress.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in in_progress:
                return SELF_REFERENCE
            if id(child) not in sizes:
                stack.append((child, False))
    return max(0, sizes[id(root)] - len(sizes))


_NODE_SEPARATORS = ",:-\n[{"


def _node_count_over(text: str, limit: int) -> bool:
    """Whether ``text`` holds more than ``limit`` YAML nodes as written, without building them.

    Every node but the first follows a separator (``,``, ``:``, ``-``, a newline, ``[`` or ``{``), so twice
    their count bounds the nodes; only a text whose bound is over the limit has its parse events counted,
    one at a time (a streaming pass that keeps nothing), up to the limit.
    """
    if 2 * sum(text.count(separator) for separator in _NODE_SEPARATORS) + 1 <= limit:
        return False
    nodes = 0
    for event in yaml.parse(text, Loader=_FAST_LOADER or yaml.SafeLoader):  # disposed when dropped
        if isinstance(event, yaml.NodeEvent):  # scalars, aliases, collection starts
            nodes += 1
            if nodes > limit:
                return True
    return False


def load_documents(text: str, source: str, limits: FileLimits = DEFAULT_LIMITS) -> list[Any]:
    """Every YAML document of ``text``, refusing more nodes or alias expansion than the limits allow
    (ManifestError naming ``source``)."""
    try:
        too_many = _node_count_over(text, limits.max_nodes)
    except yaml.YAMLError:
        too_many = False  # the parse below reports the error with its position
    if too_many:
        raise ManifestError(source, f"more than {limits.max_nodes:,} YAML nodes in one file; refused")
    documents: list[Any] = []
    may_alias = "&" in text and "*" in text  # an alias names an anchor; without both, nothing to count
    try:
        loader = (_FAST_LOADER or yaml.SafeLoader)(text)
    except yaml.YAMLError as error:
        raise ManifestError(source, f"not valid YAML: {_yaml_error_message(error)}") from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                documents.append(None)
                continue
            added = _expanded_alias_nodes(node) if may_alias else 0
            if added == SELF_REFERENCE:
                raise ManifestError(source, f"document {len(documents) + 1}: a YAML alias inside the node it "
                                            "names (endless when expanded); refused")
            if added > limits.max_alias_nodes:
                raise ManifestError(source, f"document {len(documents) + 1}: YAML aliases expand to more than "
                                            f"{limits.max_alias_nodes:,} extra nodes (a YAML bomb?); refused")
            documents.append(loader.construct_document(node))
    except yaml.YAMLError as error:
        raise ManifestError(source, f"not valid YAML: {_yaml_error_message(_precise_error(text, error))}") from None
    except RecursionError:
        raise ManifestError(source, "not valid YAML: nested too deeply") from None
    except MemoryError:
        raise ManifestError(source, "out of memory while parsing; refused") from None
    finally:
        loader.dispose()
    return documents


_PRECISE_ERROR_MAX_CHARS = 1024 * 1024


def _precise_error(text: str, error: yaml.YAMLError) -> yaml.YAMLError:
    """libyaml's messages are terser than PyYAML's own; on an error in a small file, ask the pure-Python
    parser where and why (in a large one it would take seconds; libyaml's message is good enough)."""
    if _FAST_LOADER is None or len(text) > _PRECISE_ERROR_MAX_CHARS:
        return error
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        try:
            while loader.check_node():
                loader.get_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as precise:
        return precise
    except (RecursionError, MemoryError):
        return error
    return error


def decode_manifest(data: bytes, source: str) -> str:
    """The file's text; invalid UTF-8 is a ManifestError naming the byte offset and line (not the bytes)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ManifestError(source, f"not valid UTF-8 at byte offset {error.start} (line {line}): "
                                    f"{error.reason}") from None


def read_manifest_file(path: Path, *, limits: FileLimits = DEFAULT_LIMITS) -> FileContents:
    """The objects of one file; ManifestError (naming the file) if the file as a whole cannot be used.

    A document the model refuses is listed in ``rejected``, one of a kind mcgw does not read in ``skipped``.
    """
    source = str(path)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ManifestError(source, f"{size:,} bytes, more than the {limits.max_bytes:,}-byte limit for a "
                                    "manifest file; refused")
    try:
        with path.open("rb") as file:
            data = file.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            raise ManifestError(source, f"more than the {limits.max_bytes:,}-byte limit for a manifest file "
                                        "(it grew while being read); refused")
        documents = load_documents(decode_manifest(data, source), source, limits)
        del data
        objects: list[AnyObject] = []
        sources: list[str] = []
        skipped: list[str] = []
        rejected: list[Rejected] = []

        def add(item: object, where: str) -> None:
            if isinstance(item, dict) and item.get("kind") not in FILE_KINDS:
                skipped.append(f"{where}: {_unread_kind(item)}, skipped")
                return
            try:
                objects.append(parse_object(item, where))
            except ManifestError as error:
                rejected.append(Rejected(error, _intended_key(item) if isinstance(item, dict) else None))
                return
            sources.append(where)

        for number, document in enumerate(documents, start=1):
            if document is None:
                continue
            if isinstance(document, dict) and document.get("kind") == "List":
                for item_number, item in enumerate(document.get("items") or [], start=1):
                    add(item, f"{path} document {number} item {item_number}")
                continue
            add(document, f"{path} document {number}")
    except MemoryError:
        raise ManifestError(source, "out of memory while reading; refused") from None
    return FileContents(tuple(objects), tuple(sources), tuple(skipped), tuple(rejected))


def manifest_paths(directory: Path) -> list[Path]:
    """The manifest files under ``directory``, in the order they are read."""
    return sorted(p for p in directory.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())


def merge_files(files: list[FileContents]) -> list[AnyObject]:
    """The objects of a cluster's files; the same kind/namespace/name twice is a ManifestError naming both places."""
    objects: list[AnyObject] = []
    seen: dict[tuple[str, str, str], str] = {}
    for contents in files:
        for parsed, source in zip(contents.objects, contents.sources, strict=True):
            if parsed.key in seen:
                kind, namespace, name = parsed.key
                raise ManifestError(source, f"{kind} {namespace + '/' if namespace else ''}{name} is also defined "
                                            f"in {seen[parsed.key]}")
            seen[parsed.key] = source
            objects.append(parsed)
    return objects


@dataclass(frozen=True)
class ClusterManifests:
    """A cluster directory's objects, why each rejected document was left out, and the documents skipped
    for their kind."""

    objects: list[AnyObject]
    rejected: list[Rejected]
    skipped: list[str]


def read_cluster_manifests(directory: Path, limits: FileLimits = DEFAULT_LIMITS) -> ClusterManifests:
    """Every object under ``directory``; an unusable file is a ManifestError, a refused document is listed."""
    files = []
    for path in manifest_paths(directory):
        try:
            files.append(read_manifest_file(path, limits=limits))
        except OSError as error:
            raise ManifestError(str(path), f"cannot be read: {error.strerror or error}") from None
    return ClusterManifests(merge_files(files), [r for f in files for r in f.rejected],
                            [skip for f in files for skip in f.skipped])


def read_cluster_dir(directory: Path, limits: FileLimits = DEFAULT_LIMITS) -> list[AnyObject]:
    """Every object under ``directory``, strictly (fixtures, the demo): any unusable file, refused document
    or skipped kind is a ManifestError."""
    manifests = read_cluster_manifests(directory, limits)
    if manifests.rejected:
        raise manifests.rejected[0].error
    if manifests.skipped:
        where, _, problem = manifests.skipped[0].partition(": ")
        raise ManifestError(where, f"{problem.removesuffix(', skipped')}; mcgw reads {', '.join(FILE_KINDS)}")
    return manifests.objects


def read_clusterset_manifests(root: Path, limits: FileLimits = DEFAULT_LIMITS,
                              ) -> tuple[ClusterSetProperties, dict[str, ClusterManifests]]:
    """Cluster properties and each cluster's manifests, refused documents listed rather than raised."""
    properties = read_clusterset_properties(root)
    return properties, {c.name: read_cluster_manifests(root / c.name, limits) for c in properties.clusters}


def read_clusterset_dir(root: Path, limits: FileLimits = DEFAULT_LIMITS,
                        ) -> tuple[ClusterSetProperties, dict[str, list[AnyObject]]]:
    """Cluster properties and each cluster's objects, strictly (fixtures and the demo, whose input is ours).

    Without clusterset.yaml every subdirectory is a cluster."""
    properties = read_clusterset_properties(root)
    return properties, {c.name: read_cluster_dir(root / c.name, limits) for c in properties.clusters}


def read_clusterset_properties(root: Path) -> ClusterSetProperties:
    """The clusters of ``root`` (clusterset.yaml, or one per subdirectory); ConfigError if they do not match."""
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
    return properties


def read_config_yaml(path: Path) -> Any:
    """A small YAML configuration file; ConfigError naming the file if it cannot be read or parsed."""
    try:
        documents = load_documents(decode_manifest(path.read_bytes(), str(path)), str(path))
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    except ManifestError as error:
        raise ConfigError(str(error)) from None
    if len(documents) > 1:
        raise ConfigError(f"{path}: expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None


def load_clusterset(path: Path) -> ClusterSetProperties:
    data = read_config_yaml(path)
    try:
        return ClusterSetProperties.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {validation_problems(error)}") from None
