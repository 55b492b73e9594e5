"""Container images as local executables: a small table from image repository to what its entrypoint runs.

Nothing is pulled. An image is matched by repository (any tag or digest), after the normalisation a
container runtime applies (``envoyproxy/envoy`` is ``docker.io/envoyproxy/envoy``). ``binaries`` maps
paths inside the image (``envoy``, ``/usr/local/bin/envoy``) to host executables, so a pod's ``command``
may name them as it would in the real image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ECHO_BASIC_REPOSITORIES = ("registry.k8s.io/gateway-api/echo-basic", "gcr.io/k8s-staging-gateway-api/echo-basic")
ENVOY_REPOSITORIES = ("docker.io/envoyproxy/envoy", "docker.io/envoyproxy/envoy-distroless")
# charts/mcgw's default image is plain ``mcgw`` (docker.io/library/mcgw once normalised).
MCGW_REPOSITORIES = ("ghcr.io/mcgw-io/mcgw", "mcgw")
MCGW_IMAGE_BIN = "/opt/mcgw/bin"
# The conformance suite's base manifests run coredns for its UDPRoute tests (UDPRouteSimple sends it a DNS
# query through the Gateway), and its set-up waits until every pod of the namespace is Ready. A DNS
# responder of the test bed's own stands in (it answers itself and forwards nothing: the real Corefile
# forwards to public resolvers); it ignores the coredns arguments. It runs on the system Python 3, standard
# library only, because the pod mounts its config over /root, which hides the venv's interpreter; its
# script is an image file at /opt/coredns.
COREDNS_REPOSITORY = "registry.k8s.io/coredns/coredns"
DNS_RESPONDER = Path(__file__).with_name("dns_responder.py")
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Image:
    """What a runtime takes from an image: ENTRYPOINT, CMD, ENV and WORKDIR, with host executables."""

    repository: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = (("PATH", DEFAULT_PATH),)
    working_dir: str = "/"
    binaries: Mapping[str, str] = field(default_factory=dict)
    # Directories of the image: path inside it -> host directory, shown read-only below the pod's volumes,
    # so that an emptyDir at /tmp does not hide an image whose files live in a checkout under /tmp.
    files: Mapping[str, str] = field(default_factory=dict)
    # The official Envoy image's entrypoint script runs ``envoy "$@"`` when the first argument is a flag.
    flags_go_to: str = ""


def normalize(reference: str) -> tuple[str, str]:
    """``(repository, tag-or-digest)`` of an image reference, with Docker Hub's implicit parts made explicit."""
    name, _, digest = reference.partition("@")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    elif first == "index.docker.io":
        name = f"docker.io/{rest}"
    return name, digest or tag or "latest"


def find_image(table: Iterable[Image], reference: str) -> Image | None:
    repository, _ = normalize(reference)
    for image in table:
        if normalize(image.repository)[0] == repository:
            return image
    return None


def container_argv(image: Image, command: Sequence[str], args: Sequence[str]) -> list[str]:
    """The process a runtime starts: ``command`` replaces ENTRYPOINT (and drops CMD), ``args`` replace CMD."""
    if command:
        argv = [*command, *args]
    elif args:
        argv = [*image.entrypoint, *args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    if image.flags_go_to and (not argv or argv[0].startswith("-")):
        argv = [image.flags_go_to, *argv]
    if argv and argv[0] in image.binaries:
        argv[0] = image.binaries[argv[0]]
    return argv


def default_table(envoy: Path | None, mcgw: Path | None, echo_basic: Path | None,
                  mcgw_source: Path | None = None, mcgw_launcher: Path | None = None) -> list[Image]:
    """The images the test bed can run; one whose executable is unknown is left out (so it fails to pull).

    The mcgw image is the venv of ``mcgw`` (its console script) at ``/opt/mcgw/venv`` with ``mcgw_source``
    (the checkout the runner runs from: the venv is shared by several) at ``/opt/mcgw/src`` first on its
    PYTHONPATH, and ``mcgw_launcher`` (from :func:`write_mcgw_launcher`) at ``/opt/mcgw/bin``."""
    table = []
    if echo_basic is not None:
        for repository in ECHO_BASIC_REPOSITORIES:
            table.append(Image(repository, entrypoint=("/echo-basic",),
                               binaries={"/echo-basic": str(echo_basic), "echo-basic": str(echo_basic)}))
    if envoy is not None:
        binaries = {"envoy": str(envoy), "/usr/local/bin/envoy": str(envoy)}
        for repository in ENVOY_REPOSITORIES:
            table.append(Image(repository, cmd=("envoy", "-c", "/etc/envoy/envoy.yaml"), binaries=binaries,
                               flags_go_to="envoy"))
    # CoreDNS: a DNS responder over UDP (the suite's UDPRoute tests query it through the Gateway).
    table.append(Image(COREDNS_REPOSITORY, entrypoint=(SYSTEM_PYTHON, f"/opt/coredns/{DNS_RESPONDER.name}"),
                       files={"/opt/coredns": str(DNS_RESPONDER.parent)}))
    if mcgw is not None and mcgw_source is not None and mcgw_launcher is not None:
        files = {"/opt/mcgw/venv": str(mcgw.parent.parent), "/opt/mcgw/src": str(mcgw_source),
                 "/opt/mcgw/bin": str(mcgw_launcher)}
        env = (("PATH", f"{MCGW_IMAGE_BIN}:{DEFAULT_PATH}"), ("PYTHONPATH", "/opt/mcgw/src"))
        launcher = f"{MCGW_IMAGE_BIN}/mcgw"
        for repository in MCGW_REPOSITORIES:
            table.append(Image(repository, entrypoint=("mcgw",), env=env, files=files,
                               binaries={"mcgw": launcher, "/usr/local/bin/mcgw": launcher}))
    return table


def write_mcgw_launcher(directory: Path) -> Path:
    """The mcgw image's ``bin``: an ``mcgw`` that runs the image's venv (the venv's own console script names
    the host path of its interpreter, which a volume may hide)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "mcgw"
    script.write_text('#!/bin/sh\nexec /opt/mcgw/venv/bin/python -m mcgw "$@"\n')
    script.chmod(0o755)
    return directory


def image_from_json(entry: Mapping[str, Any]) -> Image:
    """One table entry as written in an ``--images`` file (keys as in :class:`Image`, camelCase accepted)."""
    env = {"PATH": DEFAULT_PATH, **{str(k): str(v) for k, v in entry.get("env", {}).items()}}
    return Image(
        repository=str(entry["repository"]),
        entrypoint=tuple(str(a) for a in entry.get("entrypoint", ())),
        cmd=tuple(str(a) for a in entry.get("cmd", ())),
        env=tuple(env.items()),
        working_dir=str(entry.get("workingDir", entry.get("working_dir", "/"))),
        binaries={str(k): str(v) for k, v in entry.get("binaries", {}).items()},
        flags_go_to=str(entry.get("flagsGoTo", entry.get("flags_go_to", ""))),
        files={str(k): str(v) for k, v in entry.get("files", {}).items()},
    )


def load_table(path: Path) -> list[Image]:
    """Images from a JSON file: a list of entries for :func:`image_from_json`."""
    return [image_from_json(entry) for entry in json.loads(path.read_text())]
