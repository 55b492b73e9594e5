"""Build and cache the upstream Gateway API conformance suite and its echo-basic backend.

Both come unmodified from ``sigs.k8s.io/gateway-api/conformance``, pinned by ``hack/conformance``
(its version must equal the gateway-api pin in crds/upstream.yaml; tests/test_pins.py checks it).
The suite is a Go *test* binary (``go test -c``): its TestConformance reads the suite's own flags.
Cached in ``~/.cache/mcgw/bin/`` by version and pin hash, as build.py does for kube-apiserver.

Run as ``python -m tests.e2e.testbed.conformance_build`` to build both and print the paths.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from tests.e2e.testbed.build import CACHE, HACK, _go, _log, _pin_hash, build_go_binary, required_version

MODULE_DIR = HACK / "conformance"
MODULE = "sigs.k8s.io/gateway-api/conformance"
ECHO_BASIC_PACKAGE = f"{MODULE}/echo-basic"
SUITE_NAME = "gateway-conformance"
ECHO_BASIC_NAME = "echo-basic"


def conformance_version() -> str:
    """The pinned suite version, e.g. ``v1.6.3`` (tag ``conformance/v1.6.3`` upstream)."""
    return required_version(MODULE_DIR / "go.mod", MODULE)


def _cached_path(name: str) -> Path:
    return CACHE / "bin" / f"{name}-{conformance_version()}-{_pin_hash(MODULE_DIR)}" / name


def cached_echo_basic() -> Path | None:
    """The cached echo-basic binary, or None; never builds (for the pod runner's image map)."""
    try:
        path = _cached_path(ECHO_BASIC_NAME)
    except (OSError, RuntimeError):
        return None
    return path if path.exists() else None


def cached_conformance_suite() -> Path | None:
    """The cached suite binary, or None; never builds."""
    try:
        path = _cached_path(SUITE_NAME)
    except (OSError, RuntimeError):
        return None
    return path if path.exists() else None


def echo_basic_binary() -> Path:
    """echo-basic, the backend every conformance Deployment runs; built if missing."""
    return build_go_binary(ECHO_BASIC_NAME, MODULE_DIR, ECHO_BASIC_PACKAGE, conformance_version(), "-s -w")


def conformance_suite_binary() -> Path:
    """The suite's test binary (``go test -c`` of the upstream package); built if missing.

    build_go_binary only knows ``go build``; a test binary needs ``go test -c``, so this mirrors it.
    ``-vet=off`` because vet belongs to running tests, not to compiling someone else's.
    """
    version = conformance_version()
    binary = _cached_path(SUITE_NAME)
    if binary.exists():
        _log(f"{SUITE_NAME} {version}: cached at {binary}")
        return binary
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain is needed to build the conformance suite (go not found on PATH)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _log(f"{SUITE_NAME} {version}: downloading modules ...")
    _go(["mod", "download"], MODULE_DIR, f"{SUITE_NAME} {version}: downloading modules")
    downloaded = time.monotonic()
    _log(f"{SUITE_NAME} {version}: modules downloaded in {downloaded - started:.1f}s; compiling ...")
    partial = binary.parent / f".{SUITE_NAME}.partial"
    _go(
        ["test", "-c", "-vet=off", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), MODULE],
        MODULE_DIR,
        f"{SUITE_NAME} {version}: compiling",
    )
    partial.rename(binary)
    _log(f"{SUITE_NAME} {version}: compiled in {time.monotonic() - downloaded:.1f}s -> {binary}")
    return binary


def main() -> int:
    started = time.monotonic()
    try:
        echo = echo_basic_binary()
        suite = conformance_suite_binary()
    except RuntimeError as error:
        print(f"[testbed-build] FAILED: {error}", file=sys.stderr)
        return 1
    _log(f"conformance {conformance_version()} ready in {time.monotonic() - started:.1f}s: {suite}, {echo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
