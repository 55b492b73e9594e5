"""Run a Dockerfile's stages and write the last one as an OCI image.

Each step that changes files (RUN, COPY, a WORKDIR that has to be created) becomes a layer, cached by
a key over the step before it, the step's text and, for COPY, the content it copies: an unchanged step
is not run again, as with Docker's build cache. ``--no-cache`` runs every step.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import chroot, dockerfile, layers, oci, rootfs

CACHE = Path(os.environ.get("MCGW_CACHE", Path.home() / ".cache" / "mcgw")) / "image"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's CA bundle (for a proxy that re-signs TLS) as RUN steps see it, with PIP_CERT naming it.
BUILD_CA = "/run/build/ca-certificates.crt"


def _log(message: str) -> None:
    print(f"[image] {message}", flush=True)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass
class State:
    """A stage as far as it has been built: its layers, its config, and (once needed) its files."""

    layers: list[layers.Layer]
    chain: str
    env: dict[str, str]
    user: str = ""
    workdir: str = "/"
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, object]] = field(default_factory=list)
    root: Path | None = None
    applied: int = 0


@dataclass(frozen=True)
class Result:
    layout: Path
    archive: Path | None
    manifest_digest: str
    config: dict[str, object]
    seconds: float
    steps_run: int
    steps_cached: int


class Builder:
    def __init__(self, context: Path, work: Path, cache: Path, use_cache: bool) -> None:
        self.context = context
        self.work = work
        self.cache = cache
        self.use_cache = use_cache
        self.blobs = cache / "blobs" / "sha256"
        self.steps = cache / "steps"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.steps.mkdir(parents=True, exist_ok=True)
        self.ignore = _read_ignore(context / ".dockerignore")
        self.run_count = 0
        self.cached_count = 0
        self.build_env, self.build_binds = _build_environment()

    # -- the filesystem of a stage --------------------------------------------------------------------
    def materialize(self, state: State) -> Path:
        if state.root is None:
            state.root = Path(tempfile.mkdtemp(dir=self.work, prefix="stage-"))
            state.root.chmod(0o755)  # it is / inside: every user must be able to enter it
            state.applied = 0
        for layer in state.layers[state.applied:]:
            layers.apply(layer.path, state.root)
        state.applied = len(state.layers)
        return state.root

    def _step(self, state: State, instruction: dockerfile.Instruction, key_parts: list[str],
              action: Callable[[Path], None]) -> None:
        """Run a step that may change files (or take its layer from the cache) and record it."""
        key = _hash(state.chain, instruction.text, *key_parts)
        record = self.steps / f"{key}.json"
        layer: layers.Layer | None
        if self.use_cache and record.exists():
            saved = json.loads(record.read_text())
            layer = None if saved is None else layers.Layer(self.blobs / saved["digest"].split(":")[1],
                                                            saved["digest"], saved["diff_id"], saved["size"])
            if layer is None or layer.path.exists():
                self.cached_count += 1
                _log(f"line {instruction.line}: {instruction.keyword} cached")
                self._record(state, instruction, key, layer)
                return
        root = self.materialize(state)
        before = layers.snapshot(root)
        started = time.monotonic()
        action(root)
        changed, removed = layers.changes(before, layers.snapshot(root))
        layer = None
        if changed or removed:
            partial = self.blobs / f"step-{key[:16]}.{os.getpid()}.gz"
            written = layers.write(root, changed, removed, partial)
            layer = replace(written, path=self.blobs / written.digest.split(":")[1])
            os.replace(partial, layer.path)
        self.run_count += 1
        size = f"{layer.size / 1e6:.1f} MB layer" if layer else "no layer"
        _log(f"line {instruction.line}: {instruction.keyword} ran in {time.monotonic() - started:.1f}s, {size}")
        _write_atomically(record, json.dumps(None if layer is None else
                                             {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}))
        self._record(state, instruction, key, layer)
        if layer is not None:
            state.applied += 1  # its files are already on disk

    def _record(self, state: State, instruction: dockerfile.Instruction, key: str, layer: layers.Layer | None) -> None:
        state.chain = key
        if layer is not None:
            state.layers.append(layer)
        state.history.append({"created_by": instruction.text, **({} if layer else {"empty_layer": True})})

    # -- instructions --------------------------------------------------------------------------------
    def stage_from(self, base: str, built: dict[str, State]) -> State:
        if base in built:
            parent = built[base]
            return State(layers=list(parent.layers), chain=parent.chain, env=dict(parent.env), user=parent.user,
                         workdir=parent.workdir, entrypoint=parent.entrypoint, cmd=parent.cmd,
                         labels=dict(parent.labels), history=list(parent.history))
        made = rootfs.base_layer(base, self.cache)
        layer = replace(made, path=self.blobs / made.digest.split(":")[1])
        if not layer.path.exists():
            shutil.copyfile(made.path, layer.path)
        return State(layers=[layer], chain=_hash("base", base, layer.digest), env={"PATH": DEFAULT_PATH},
                     cmd=["bash"], history=[{"created_by": f"debootstrap for {base} (hack/image/rootfs.py)"}])

    def run(self, state: State, instruction: dockerfile.Instruction) -> None:
        argv = list(instruction.args) if instruction.shell is None else ["/bin/sh", "-c", instruction.shell]

        def action(root: Path) -> None:
            uid, gid = _user_ids(root, state.user)
            env = {**state.env, **self.build_env}
            env.setdefault("HOME", "/root" if uid == 0 else "/")
            done = chroot.run(chroot.Spec(root=str(root), argv=argv, env=env, uid=uid, gid=gid, cwd=state.workdir,
                                          binds={"/etc/resolv.conf": "/etc/resolv.conf", **self.build_binds}))
            if done.returncode != 0:
                raise BuildError(f"line {instruction.line}: RUN exited {done.returncode}: {instruction.text}")

        self._step(state, instruction, [], action)

    def copy(self, state: State, instruction: dockerfile.Instruction, built: dict[str, State]) -> None:
        *sources, destination = instruction.args
        source_stage = instruction.flags.get("from")
        owner = instruction.flags.get("chown", "0:0")
        if source_stage is not None:
            if source_stage not in built:
                raise BuildError(f"line {instruction.line}: no stage named {source_stage}")
            other = built[source_stage]
            key_parts = [other.chain]
        else:
            key_parts = [self._content_digest(sources)]

        def action(root: Path) -> None:
            source_root = self.materialize(built[source_stage]) if source_stage is not None else self.context
            target = _inside(root, destination if destination.startswith("/")
                             else f"{state.workdir.rstrip('/')}/{destination}")
            uid, gid = _user_ids(root, owner)
            into_folder = destination.endswith("/") or len(sources) > 1
            for source in sources:
                origin = _inside(source_root, source)
                if origin.is_dir():
                    self._copy_tree(origin, target, source_stage is None, uid, gid)
                else:
                    final = target / origin.name if into_folder else target
                    final.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, final, follow_symlinks=False)
                    os.lchown(final, uid, gid)

        self._step(state, instruction, key_parts, action)

    def _copy_tree(self, origin: Path, target: Path, from_context: bool, uid: int, gid: int) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for source in self._tree(origin, from_context):
            destination = target / source.relative_to(origin)
            if source.is_dir() and not source.is_symlink():
                destination.mkdir(exist_ok=True)
                shutil.copystat(source, destination)
            else:
                shutil.copy2(source, destination, follow_symlinks=False)
            os.lchown(destination, uid, gid)

    def _tree(self, origin: Path, from_context: bool) -> list[Path]:
        """Everything below ``origin``, parents first; from the context, less what .dockerignore excludes."""
        found: list[Path] = []
        for folder, subfolders, files in os.walk(origin):
            subfolders.sort()
            for name in [*sorted(subfolders), *sorted(files)]:
                path = Path(folder) / name
                if from_context and _ignored(path.relative_to(self.context).as_posix(), self.ignore):
                    if name in subfolders:
                        subfolders.remove(name)
                    continue
                found.append(path)
        return found

    def _content_digest(self, sources: list[str]) -> str:
        digest = hashlib.sha256()
        for source in sources:
            origin = _inside(self.context, source)
            for path in [origin] if not origin.is_dir() else self._tree(origin, True):
                digest.update(f"{path.relative_to(self.context)}\0{path.lstat().st_mode}\0".encode())
                if path.is_symlink():
                    digest.update(os.readlink(path).encode())
                elif path.is_file():
                    digest.update(path.read_bytes())
        return digest.hexdigest()

    def workdir(self, state: State, instruction: dockerfile.Instruction) -> None:
        path = instruction.args[0]
        state.workdir = path if path.startswith("/") else f"{state.workdir.rstrip('/')}/{path}"

        def action(root: Path) -> None:
            _inside(root, state.workdir).mkdir(parents=True, exist_ok=True)

        self._step(state, instruction, [], action)

    def config_step(self, state: State, instruction: dockerfile.Instruction) -> None:
        keyword = instruction.keyword
        if keyword == "ENV":
            state.env.update(dockerfile.env_pairs(instruction, state.env))
        elif keyword == "USER":
            state.user = instruction.args[0]
        elif keyword in {"ENTRYPOINT", "CMD"}:
            argv = list(instruction.args) if instruction.shell is None else ["/bin/sh", "-c", instruction.shell]
            if keyword == "ENTRYPOINT":
                state.entrypoint, state.cmd = argv, None
            else:
                state.cmd = argv
        elif keyword == "LABEL":
            state.labels.update(dict(word.split("=", 1) for word in instruction.args))
        self._record(state, instruction, _hash(state.chain, instruction.text), None)


class BuildError(RuntimeError):
    """A step failed; the message names its line."""


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def _inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _user_ids(root: Path, user: str) -> tuple[int, int]:
    """USER's numeric uid[:gid], or a name looked up in the stage's /etc/passwd and /etc/group."""
    name, _, group = (user or "0").partition(":")

    def lookup(value: str, table: str, field_count: int) -> int:
        if value.isdigit():
            return int(value)
        for line in (root / "etc" / table).read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= field_count and fields[0] == value:
                return int(fields[2])
        raise BuildError(f"no {table} entry for {value}")

    uid = lookup(name, "passwd", 4)
    if group:
        return uid, lookup(group, "group", 3)
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2] == str(uid):
            return uid, int(fields[3])
    return uid, 0  # a user without a passwd entry gets the root group, as with Docker


def _read_ignore(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    if not path.exists():
        return patterns
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((include, re.compile(regex)))
    return patterns


def _ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """.dockerignore's rule: the last pattern matching the path (or a folder above it) decides."""
    candidates = [relative]
    parts = relative.split("/")
    candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
    ignored = False
    for include, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not include
    return ignored


# Like Docker's predefined proxy build arguments: taken from the host for RUN steps, never in the image.
PASSED_THROUGH = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                  "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _build_environment() -> tuple[dict[str, str], dict[str, str]]:
    """The environment and files RUN steps get from the host: proxy and index settings, and the CA bundle
    pip is told to use (else the host's), at ``BUILD_CA`` on the step's tmpfs /run."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or HOST_BUNDLE
    if Path(bundle).is_file():
        return {**env, "PIP_CERT": BUILD_CA}, {str(Path(bundle).resolve()): BUILD_CA}
    return env, {}


def build(dockerfile_path: Path, context: Path, output: Path, *, tag: str, archive: Path | None = None,
          use_cache: bool = True, cache: Path = CACHE) -> Result:
    """Build ``dockerfile_path`` and write its last stage to ``output`` (an OCI image layout)."""
    started = time.monotonic()
    stages = dockerfile.read(dockerfile_path)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="work-") as work:
        builder = Builder(context, Path(work), cache, use_cache)
        built: dict[str, State] = {}
        state: State | None = None
        for number, stage in enumerate(stages):
            state = builder.stage_from(stage.base, built)
            for instruction in stage.instructions:
                if instruction.keyword == "RUN":
                    builder.run(state, instruction)
                elif instruction.keyword == "COPY":
                    builder.copy(state, instruction, built)
                elif instruction.keyword == "WORKDIR":
                    builder.workdir(state, instruction)
                else:
                    builder.config_step(state, instruction)
            built[str(number)] = state
            if stage.name:
                built[stage.name] = state
        assert state is not None
        config = oci.image_config(env=state.env, user=state.user, workdir=state.workdir,
                                  entrypoint=state.entrypoint, cmd=state.cmd, labels=state.labels,
                                  diff_ids=[layer.diff_id for layer in state.layers], history=state.history)
        manifest_digest = oci.write_layout(output, config, state.layers, tag=tag)
        if archive is not None:
            oci.write_docker_archive(output, archive, tag=tag)
        return Result(output, archive, manifest_digest, config, time.monotonic() - started,
                      builder.run_count, builder.cached_count)

