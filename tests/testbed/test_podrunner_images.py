"""Image references to local executables: normalisation, the table, and ENTRYPOINT/CMD semantics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.testbed.podrunner.images import (
    DEFAULT_PATH,
    Image,
    container_argv,
    default_table,
    find_image,
    load_table,
    normalize,
    write_mcgw_launcher,
)

TABLE = default_table(Path("/venv/envoy"), Path("/venv/bin/mcgw"), Path("/cache/echo-basic"),
                      mcgw_source=Path("/src/checkout"), mcgw_launcher=Path("/state/mcgw-image-bin"))


@pytest.mark.parametrize(("reference", "expected"), [
    ("envoyproxy/envoy:v1.40.0", ("docker.io/envoyproxy/envoy", "v1.40.0")),
    ("docker.io/envoyproxy/envoy:v1.40.0", ("docker.io/envoyproxy/envoy", "v1.40.0")),
    ("index.docker.io/envoyproxy/envoy", ("docker.io/envoyproxy/envoy", "latest")),
    ("busybox", ("docker.io/library/busybox", "latest")),
    ("registry.k8s.io/gateway-api/echo-basic:v1.5.1", ("registry.k8s.io/gateway-api/echo-basic", "v1.5.1")),
    ("localhost:5000/app:1", ("localhost:5000/app", "1")),
    ("ghcr.io/mcgw-io/mcgw@sha256:abc", ("ghcr.io/mcgw-io/mcgw", "sha256:abc")),
])
def test_normalize(reference: str, expected: tuple[str, str]) -> None:
    assert normalize(reference) == expected


@pytest.mark.parametrize(("reference", "executable"), [
    ("registry.k8s.io/gateway-api/echo-basic:v1.5.1", "/cache/echo-basic"),
    ("gcr.io/k8s-staging-gateway-api/echo-basic:v20240412-v1.0.0-394-g40c666fd", "/cache/echo-basic"),
    ("envoyproxy/envoy:v1.40.0", "/venv/envoy"),
    ("docker.io/envoyproxy/envoy:distroless-v1.40.0", "/venv/envoy"),
    ("ghcr.io/mcgw-io/mcgw:0.1.0", "/opt/mcgw/bin/mcgw"),
    ("mcgw:0.1.0", "/opt/mcgw/bin/mcgw"),  # charts/mcgw's default image
])
def test_known_images_map_to_local_executables(reference: str, executable: str) -> None:
    image = find_image(TABLE, reference)
    assert image is not None
    assert container_argv(image, [], ["--flag"])[0] == executable


def test_the_mcgw_image_runs_the_given_checkout_from_its_own_directories(tmp_path: Path) -> None:
    launcher = write_mcgw_launcher(tmp_path / "bin")
    table = default_table(None, Path("/venv/bin/mcgw"), None, mcgw_source=Path("/src/checkout"), mcgw_launcher=launcher)
    image = find_image(table, "docker.io/library/mcgw:0.1.0")
    assert image is not None
    assert dict(image.files) == {"/opt/mcgw/venv": "/venv", "/opt/mcgw/src": "/src/checkout",
                                 "/opt/mcgw/bin": str(launcher)}
    assert dict(image.env) == {"PATH": f"/opt/mcgw/bin:{DEFAULT_PATH}", "PYTHONPATH": "/opt/mcgw/src"}
    assert container_argv(image, ["mcgw"], ["run", "--config=/etc/mcgw/config.yaml"]) == [
        "/opt/mcgw/bin/mcgw", "run", "--config=/etc/mcgw/config.yaml"]
    assert (launcher / "mcgw").read_text().splitlines()[-1] == 'exec /opt/mcgw/venv/bin/python -m mcgw "$@"'


def test_unknown_images_and_missing_executables_are_not_found() -> None:
    assert find_image(TABLE, "registry.k8s.io/kube-proxy:v1.37.2") is None
    assert find_image(default_table(None, None, None), "envoyproxy/envoy:v1.40.0") is None


def test_envoy_entrypoint_semantics() -> None:
    envoy = find_image(TABLE, "envoyproxy/envoy:v1.40.0")
    assert envoy is not None
    assert container_argv(envoy, [], []) == ["/venv/envoy", "-c", "/etc/envoy/envoy.yaml"]
    assert container_argv(envoy, [], ["--config-path", "/etc/envoy/bootstrap.yaml"]) == [
        "/venv/envoy", "--config-path", "/etc/envoy/bootstrap.yaml"]
    assert container_argv(envoy, ["envoy", "--mode", "validate"], []) == ["/venv/envoy", "--mode", "validate"]
    assert container_argv(envoy, ["/usr/local/bin/envoy"], ["-c", "x"]) == ["/venv/envoy", "-c", "x"]
    assert container_argv(envoy, ["sh", "-c", "true"], []) == ["sh", "-c", "true"]


def test_command_replaces_entrypoint_and_cmd() -> None:
    image = Image("x/y", entrypoint=("/entry",), cmd=("default",))
    assert container_argv(image, [], []) == ["/entry", "default"]
    assert container_argv(image, [], ["a"]) == ["/entry", "a"]
    assert container_argv(image, ["/other"], []) == ["/other"]
    assert container_argv(image, ["/other"], ["a"]) == ["/other", "a"]


def test_table_file(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps([{"repository": "mcgw-testbed/python", "entrypoint": ["/usr/bin/python3"],
                                 "env": {"LANG": "C.UTF-8"}, "workingDir": "/srv",
                                 "binaries": {"python": "/usr/bin/python3"},
                                 "files": {"/opt/testbed/src": "/work/checkout"}}]))
    (image,) = load_table(path)
    assert dict(image.files) == {"/opt/testbed/src": "/work/checkout"}
    assert find_image([image], "mcgw-testbed/python:3") == image
    assert dict(image.env) == {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
    assert image.working_dir == "/srv"
    assert container_argv(image, ["python", "-c", "1"], []) == ["/usr/bin/python3", "-c", "1"]


def test_coredns_is_a_dns_responder_that_answers_a_queries_over_udp_and_stops_on_sigterm() -> None:
    import signal
    import socket
    import struct
    import subprocess
    import time

    from mcgw.support.netutil import free_port

    image = find_image(default_table(None, None, None), "registry.k8s.io/coredns/coredns:v1.12.2")
    assert image is not None
    port = free_port("127.0.0.1")
    # As the suite's Deployment says, plus a port a test may bind.
    argv = container_argv(image, [], ["-conf", "/root/Corefile", "-dns.port", str(port)])
    assert argv[1].startswith("/opt/coredns/")
    argv[1] = argv[1].replace("/opt/coredns", image.files["/opt/coredns"], 1)  # run here as the image's file
    process = subprocess.Popen(argv)
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x03foo\x03bar\x03com\x00" + struct.pack("!HH", 1, 1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.5)
            answer = b""
            for _ in range(20):  # until it listens
                client.sendto(query, ("127.0.0.1", port))
                try:
                    answer = client.recv(512)
                    break
                except TimeoutError:
                    time.sleep(0.1)
        ident, flags, questions, answers, _, _ = struct.unpack_from("!HHHHHH", answer)
        assert (ident, flags & 0x8000, flags & 0x000F, questions, answers) == (0x1234, 0x8000, 0, 1, 1)
        assert answer.endswith(socket.inet_aton("127.0.0.1")), "an A record of the client's address"
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
    finally:
        process.kill()
