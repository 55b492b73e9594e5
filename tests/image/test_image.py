"""The image ``make image`` builds: a valid OCI image whose config is what the Dockerfile says, whose
entrypoint is the venv's mcgw running as the unprivileged user, with mcgw's dependencies and no Envoy.

Building needs root (its RUN steps run in chroots) and, the first time, Debian's mirror and PyPI; the
steps are cached in ~/.cache/mcgw/image/, so after ``make image`` this builds in seconds. Without root
the module skips; under CI it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hack.image import chroot, dockerfile
from hack.image.__main__ import REPOSITORY, default_tag
from hack.image.build import CACHE, PASSED_THROUGH, build
from hack.image.oci import Image, LayoutError, read_layout

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "translate"


def _require_root() -> None:
    missing = [tool for tool in ("debootstrap", "unshare", "skopeo") if shutil.which(tool) is None]
    why = "building the image needs root" if os.geteuid() != 0 else (
        f"missing {', '.join(missing)} (make sysdeps)" if missing else "")
    if not why:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the image tier cannot run in CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    _require_root()
    folder = tmp_path_factory.mktemp("image")
    result = build(REPO / "Dockerfile", REPO, folder / "oci", tag=default_tag(), archive=folder / "mcgw.tar",
                   cache=CACHE)
    assert result.archive is not None
    yield result.layout, result.archive
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def image(built: tuple[Path, Path]) -> Image:
    return read_layout(built[0])


@pytest.fixture(scope="module")
def rootfs(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("rootfs") / "root"
    image.unpack(root)
    yield root
    shutil.rmtree(root)  # 360 MB; pytest would keep it with its last three runs


def _final_stage_config() -> dict[str, Any]:
    """What the Dockerfile's last stage says the config is."""
    stage = dockerfile.read(REPO / "Dockerfile")[-1]
    said: dict[str, Any] = {"Env": {}}
    for instruction in stage.instructions:
        if instruction.keyword == "ENV":
            said["Env"].update(dockerfile.env_pairs(instruction, said["Env"]))
        elif instruction.keyword == "USER":
            said["User"] = instruction.args[0]
        elif instruction.keyword == "WORKDIR":
            said["WorkingDir"] = instruction.args[0]
        elif instruction.keyword in {"ENTRYPOINT", "CMD"}:
            said["Entrypoint" if instruction.keyword == "ENTRYPOINT" else "Cmd"] = list(instruction.args)
    return said


def _spec(image: Image, rootfs: Path, args: list[str] | None = None, *, entrypoint: list[str] | None = None,
          binds: dict[str, str] | None = None) -> chroot.Spec:
    """The container as a runtime makes it from the config (Entrypoint + args or Cmd, User, Env, WorkingDir),
    in the chart's pod security context: a read-only root file system with an emptyDir at /tmp."""
    config = image.config["config"]
    uid, _, gid = config["User"].partition(":")
    argv = [*(entrypoint or config["Entrypoint"]), *(args if args is not None else config.get("Cmd", []))]
    env = dict(item.split("=", 1) for item in config["Env"])
    return chroot.Spec(root=str(rootfs), argv=argv, env=env, uid=int(uid), gid=int(gid or 0),
                       cwd=config["WorkingDir"], binds=binds or {}, read_only=True, tmpfs=["/tmp"])


def _run(image: Image, rootfs: Path, args: list[str] | None = None, *, entrypoint: list[str] | None = None,
         binds: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    spec = _spec(image, rootfs, args, entrypoint=entrypoint, binds=binds)
    return chroot.run(spec, capture=True, timeout=120)


def test_layout_is_a_valid_oci_image(built: tuple[Path, Path], image: Image) -> None:
    layout, _ = built
    assert image.index["manifests"][0]["annotations"]["io.containerd.image.name"] == default_tag()
    # skopeo reads the layout itself and checks every blob against its digest as it copies them.
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}"], capture_output=True, text=True, check=True)
    assert json.loads(raw.stdout) == image.manifest
    config = subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}"], capture_output=True, text=True,
                            check=True)
    assert json.loads(config.stdout)["config"] == image.config["config"]
    copy = layout.parent / "copied"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", f"oci:{layout}", f"dir:{copy}"],
                   check=True, capture_output=True)
    assert sorted(p.name for p in copy.iterdir() if p.name not in {"manifest.json", "version"}) == sorted(
        [image.manifest["config"]["digest"].split(":")[1], *(lay["digest"].split(":")[1]
                                                             for lay in image.manifest["layers"])])


def test_a_corrupted_layer_is_refused(built: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "oci"
    shutil.copytree(built[0], copy)
    image = read_layout(copy)
    last = image.blob(image.manifest["layers"][-1]["digest"])
    last.chmod(0o644)
    with open(last, "r+b") as blob:
        blob.seek(100)
        blob.write(b"\0" * 16)
    with pytest.raises(LayoutError, match="does not match its digest"):
        read_layout(copy)


def test_docker_archive_is_readable_with_its_tag(built: tuple[Path, Path], image: Image) -> None:
    """What ``docker load`` reads: skopeo finds the image in the archive by its tag (and only by it)."""
    _, archive = built
    inspected = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:{default_tag()}"],
                               capture_output=True, text=True, check=True)
    found = json.loads(inspected.stdout)
    assert found["Name"] == f"docker.io/library/{REPOSITORY}"
    assert found["Layers"] == image.config["rootfs"]["diff_ids"]
    other = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:{REPOSITORY}:no-such-tag"],
                           capture_output=True, text=True, check=False)
    assert other.returncode != 0
    assert "not found" in other.stderr


def test_config_is_what_the_dockerfile_says(image: Image) -> None:
    config = image.config["config"]
    said = _final_stage_config()
    assert config["Entrypoint"] == said["Entrypoint"] == ["mcgw"]
    assert config["Cmd"] == said["Cmd"]
    assert config["User"] == said["User"]
    assert config["WorkingDir"] == said["WorkingDir"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert {key: env[key] for key in said["Env"]} == said["Env"]
    uid, _, gid = config["User"].partition(":")
    assert uid.isdigit()  # runAsNonRoot can check only a numeric user
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    assert image.config["os"] == "linux"


def test_entrypoint_answers_as_the_unprivileged_user(image: Image, rootfs: Path) -> None:
    done = _run(image, rootfs)  # Cmd: --help
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: mcgw")
    assert "translate" in done.stdout
    who = _run(image, rootfs, ["-c", "import os, shutil, sys; print(os.getuid(), os.getgid(), sys.prefix, "
                                     "shutil.which('mcgw'))"], entrypoint=["python3"])
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == ["65532", "65532", "/opt/mcgw", "/opt/mcgw/bin/mcgw"]


def test_the_user_cannot_change_the_installed_code(image: Image, rootfs: Path) -> None:
    done = _run(image, rootfs, ["-c", "import mcgw; open(mcgw.__file__, 'a')"], entrypoint=["python3"])
    assert done.returncode != 0
    assert "PermissionError" in done.stderr
    scratch = _run(image, rootfs, ["-c", "import os; open('scratch', 'w').write('x'); print(os.getcwd())"],
                   entrypoint=["python3"])
    assert scratch.returncode == 0, scratch.stderr  # the working directory is the writable /tmp
    assert scratch.stdout.strip() == "/tmp"


def test_the_pod_security_context_is_what_the_chart_says(image: Image) -> None:
    """The chart's runAsUser/runAsGroup are the image's user, and it mounts its emptyDir where the image runs."""
    values = yaml.safe_load((REPO / "charts/mcgw/values.yaml").read_text())
    uid, _, gid = image.config["config"]["User"].partition(":")
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) == (
        int(uid), int(gid))
    assert values["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_build_only_trust_stays_out_of_the_image(image: Image, rootfs: Path, tmp_path: Path) -> None:
    """RUN steps see the host's pip CA bundle under /run (a tmpfs); the image has neither it nor PIP_CERT."""
    names = {item.split("=", 1)[0] for item in image.config["config"]["Env"]}
    assert names.isdisjoint({"PIP_CERT", *PASSED_THROUGH})
    assert list((rootfs / "run").iterdir()) == []
    host_bundle = os.environ.get("PIP_CERT")
    if host_bundle and Path(host_bundle).is_file():
        assert (rootfs / "etc/ssl/certs/ca-certificates.crt").read_bytes() != Path(host_bundle).read_bytes()
    secret = tmp_path / "bundle"
    secret.write_text("build-only\n")
    seen = _run(image, rootfs, ["-c", "print(open('/run/build/bundle').read(), end='')"], entrypoint=["python3"],
                binds={str(secret): "/run/build/bundle"})
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout == "build-only\n"
    assert not (rootfs / "run/build").exists()


def test_translate_gives_what_the_checkout_gives(image: Image, rootfs: Path) -> None:
    args = ["translate", "-f", "/work/example", "-o", "json"]
    inside = _run(image, rootfs, args, binds={str(EXAMPLE): "/work/example"})
    outside = subprocess.run([sys.executable, "-m", "mcgw", "translate", "-f", str(EXAMPLE), "-o", "json"],
                             capture_output=True, text=True, check=False, cwd=REPO)
    assert inside.returncode == outside.returncode == 0, inside.stderr
    translated = json.loads(inside.stdout)
    assert translated == json.loads(outside.stdout)
    assert translated  # the example has gateways in both clusters


def test_provisioning_renders_the_envoy_bootstrap(image: Image, rootfs: Path) -> None:
    """What ``mcgw run`` provisions needs the Envoy bootstrap template, package data of the wheel:
    ``gateway-manifests`` in the image renders the same objects as the checkout."""
    args = ["gateway-manifests", "--cluster", "east", "--gateway", "shop/web", "--xds", "mcgw.mcgw-system:18000",
            "--port", "80", "--xds-insecure"]
    inside = _run(image, rootfs, args)
    outside = subprocess.run([sys.executable, "-m", "mcgw", *args], capture_output=True, text=True, check=False,
                             cwd=REPO)
    assert inside.returncode == outside.returncode == 0, inside.stderr
    assert list(yaml.safe_load_all(inside.stdout)) == list(yaml.safe_load_all(outside.stdout))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_controller_serves_and_stops_on_sigterm(image: Image, rootfs: Path) -> None:
    """``mcgw standalone`` from the image: its xDS (gRPC) and admin (aiohttp) servers come up, /readyz
    answers on loopback, and SIGTERM, as the kubelet sends it, stops it cleanly."""
    admin, xds = _free_port(), _free_port()
    spec = _spec(image, rootfs, ["standalone", "-f", "/work/example", "--no-envoy", "--drain-grace", "1",
                                 f"--admin-listen=127.0.0.1:{admin}", f"--xds-listen=127.0.0.1:{xds}"],
                 binds={str(EXAMPLE): "/work/example"})
    started = chroot.start(spec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        ready = ""
        while time.monotonic() < deadline and started.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2) as answer:
                    ready = answer.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert ready, "the controller never answered /readyz"
        with socket.create_connection(("127.0.0.1", xds), timeout=5):
            pass  # the xDS port accepts connections
        pid = chroot.program_pid(started)
        assert pid is not None
        ids = {line.split(":")[0]: set(line.split()[1:]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith(("Uid:", "Gid:"))}
        assert ids == {"Uid": {"65532"}, "Gid": {"65532"}}  # real, effective, saved and filesystem ids
        os.kill(pid, signal.SIGTERM)
        output, _ = started.communicate(timeout=60)
    finally:
        if started.poll() is None:
            started.kill()
            started.communicate()
    assert started.returncode == 0, output


def test_no_envoy_and_only_mcgw_with_its_dependencies(image: Image, rootfs: Path) -> None:
    executables = [path for path in rootfs.rglob("envoy*") if path.is_file()
                   and path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)]
    assert executables == []
    script = (
        "import importlib.metadata as md, json, os, platform, sys\n"
        "print(json.dumps({'installed': {d.metadata['Name']: d.requires or [] for d in md.distributions()},\n"
        "  'environment': {'os_name': os.name, 'sys_platform': sys.platform, 'platform_machine': platform.machine(),\n"
        "    'platform_python_implementation': platform.python_implementation(),\n"
        "    'platform_system': platform.system(), 'platform_release': platform.release(),\n"
        "    'platform_version': platform.version(), 'implementation_name': sys.implementation.name,\n"
        "    'implementation_version': platform.python_version(), 'python_version': '%d.%d' % sys.version_info[:2],\n"
        "    'python_full_version': platform.python_version(), 'extra': ''}}))\n")
    done = _run(image, rootfs, ["-c", script], entrypoint=["python3"])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    installed: dict[str, list[str]] = {canonicalize_name(name): requires
                                       for name, requires in found["installed"].items()}
    wanted: set[str] = set()
    todo = ["mcgw"]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for line in installed.get(name, []):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(found["environment"]):
                todo.append(canonicalize_name(requirement.name))
    # Nothing but mcgw and what it needs to run: no pip, setuptools, test or development tools.
    assert set(installed) == wanted


def test_chart_default_image_is_what_make_image_tags() -> None:
    values = yaml.safe_load((REPO / "charts/mcgw/values.yaml").read_text())
    chart = yaml.safe_load((REPO / "charts/mcgw/Chart.yaml").read_text())
    repository, _, tag = default_tag().partition(":")
    assert values["image"]["repository"] == repository == REPOSITORY
    assert (values["image"]["tag"] or chart["appVersion"]) == tag
