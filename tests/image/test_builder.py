"""hack/image's parts that need no root: reading the Dockerfile, .dockerignore, layers and their cache keys."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hack.image import dockerfile, layers
from hack.image.build import Builder, _ignored, _read_ignore

REPO = Path(__file__).resolve().parents[2]


def test_stages_instructions_and_forms() -> None:
    stages = dockerfile.parse(
        "# comment\n"
        "FROM debian:bookworm-slim AS base\n"
        "RUN apt-get update \\\n"
        "  # a comment inside is dropped\n"
        " && apt-get install -y python3\n"
        "FROM base\n"
        "COPY --from=base --chown=1:2 /opt /opt\n"
        "ENV A=1 B=${A}2\n"
        'ENTRYPOINT ["mcgw"]\n'
        "CMD mcgw --help\n")
    assert [(stage.base, stage.name) for stage in stages] == [("debian:bookworm-slim", "base"), ("base", None)]
    run, = stages[0].instructions
    assert run.shell == "apt-get update && apt-get install -y python3"
    assert run.line == 3
    copy, env, entrypoint, cmd = stages[1].instructions
    assert copy.flags == {"from": "base", "chown": "1:2"}
    assert copy.args == ("/opt", "/opt")
    assert dockerfile.env_pairs(env, {}) == {"A": "1", "B": "12"}
    assert entrypoint.args == ("mcgw",)
    assert entrypoint.shell is None
    assert cmd.shell == "mcgw --help"


@pytest.mark.parametrize(("text", "message"), [
    ("FROM a\nARG X=1\n", "line 2: ARG is not supported"),
    ("FROM a\nRUN --mount=type=cache,target=/x true\n", "line 2: RUN flag --mount is not supported"),
    ("RUN true\n", "line 1: RUN before the first FROM"),
    ("FROM a AS\n", "line 1: FROM takes IMAGE"),
])
def test_what_the_builder_does_not_run_is_refused_with_its_line(text: str, message: str) -> None:
    with pytest.raises(dockerfile.DockerfileError, match=message):
        dockerfile.parse(text)


def test_the_repositorys_dockerfile_is_read() -> None:
    stages = dockerfile.read(REPO / "Dockerfile")
    assert stages[-1].base == stages[0].name  # the runtime is the Python base, not the build stage
    assert any(i.keyword == "COPY" and i.flags.get("from") == "build" for i in stages[-1].instructions)


def test_dockerignore_sends_only_the_package_sources() -> None:
    rules = _read_ignore(REPO / ".dockerignore")
    sent = ["pyproject.toml", "README.md", "mcgw/app/cli.py", "xdsserver/__init__.py",
            "mcgw/dataplane/envoy-bootstrap.yaml"]
    kept_out = ["tests/conftest.py", "deploy/envoy/README.md", "deploy/envoy/bootstrap.yaml", "deploy/mcgw/mcgw.yaml",
                ".venv/bin/python",
                "mcgw/app/__pycache__/cli.cpython-311.pyc", "mcgw/app/x.pyc", "docs/install.md",
                "build/image/mcgw.tar"]
    assert [path for path in sent if _ignored(path, rules)] == []
    assert [path for path in kept_out if not _ignored(path, rules)] == []


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        content = os.readlink(path) if path.is_symlink() else path.read_text() if path.is_file() else ""
        found[path.relative_to(root).as_posix()] = (path.lstat().st_mode, content)
    return found


def test_a_layer_replays_additions_changes_and_removals(tmp_path: Path) -> None:
    before = tmp_path / "before"
    for name, text in {"etc/keep": "k", "etc/change": "old", "etc/remove": "r", "gone/a/b": "b"}.items():
        (before / name).parent.mkdir(parents=True, exist_ok=True)
        (before / name).write_text(text)
    after = tmp_path / "after"
    shutil.copytree(before, after, symlinks=True)
    old = layers.snapshot(after)
    (after / "etc/change").write_text("new, longer")
    (after / "etc/remove").unlink()
    shutil.rmtree(after / "gone")
    (after / "opt/venv/bin").mkdir(parents=True)
    (after / "opt/venv/bin/tool").write_text("#!/bin/sh\n")
    (after / "opt/venv/bin/tool").chmod(0o755)
    os.symlink("tool", after / "opt/venv/bin/link")
    os.link(after / "opt/venv/bin/tool", after / "opt/venv/bin/hard")
    (after / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")  # a runtime's file: never in a layer
    changed, removed = layers.changes(old, layers.snapshot(after))
    assert removed == ["etc/remove", "gone"]  # a removed folder needs one whiteout
    layer = layers.write(after, changed, removed, tmp_path / "layer.tar.gz")
    assert layer.digest == layers.digest_file(layer.path)
    replayed = tmp_path / "replayed"
    shutil.copytree(before, replayed, symlinks=True)
    layers.apply(layer.path, replayed)
    (after / "etc/resolv.conf").unlink()
    assert _tree(replayed) == _tree(after)
    assert (replayed / "opt/venv/bin/hard").stat().st_ino == (replayed / "opt/venv/bin/tool").stat().st_ino


def test_copy_cache_key_follows_the_content_sent(tmp_path: Path) -> None:
    context = tmp_path / "context"
    (context / "mcgw").mkdir(parents=True)
    (context / "mcgw/a.py").write_text("a = 1\n")
    (context / ".dockerignore").write_text("**/*.pyc\n")
    builder = Builder(context, tmp_path, tmp_path / "cache", use_cache=True)
    first = builder._content_digest(["mcgw"])
    (context / "mcgw/a.pyc").write_bytes(b"ignored")
    assert builder._content_digest(["mcgw"]) == first
    (context / "mcgw/a.py").write_text("a = 2\n")
    assert builder._content_digest(["mcgw"]) != first
