"""Build and cache the real Kubernetes parts of the test bed: kube-apiserver, kube-controller-manager, etcd,
helm (for the chart's tests), promtool (for the monitoring rules' tests) and the upstream CRDs.

Everything comes through the Go module proxy, pinned by the wrapper modules under ``hack/``.
Results are cached in ``~/.cache/mcgw/`` keyed by version (and by a hash of the wrapper's go.sum,
so a changed pin never reuses a stale binary). A second run finds the cache and does nothing.

Run as ``python -m tests.e2e.testbed``; it prints what it builds and how long each step took.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
HACK = REPO / "hack"
CACHE = Path(os.environ.get("MCGW_CACHE", Path.home() / ".cache" / "mcgw"))


@dataclass(frozen=True)
class Artifacts:
    """Paths of the cached test-bed parts."""

    kube_apiserver: Path
    kube_controller_manager: Path
    etcd: Path
    crd_dir: Path
    kube_version: str
    etcd_version: str
    echo_basic: Path | None = None  # the conformance suite's backend, which pods of that image run
    helm: Path | None = None  # lints and renders charts/mcgw
    promtool: Path | None = None  # checks and unit-tests deploy/monitoring's rules


def required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{go_mod} does not require {module}")
    return match.group(1)


def _pin_hash(module_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        path = module_dir / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _log(message: str) -> None:
    print(f"[testbed-build] {message}", flush=True)


def _go(args: list[str], cwd: Path, progress: str | None = None) -> str:
    """Run the go command; with ``progress``, say every 30 s that it is still working (cold builds are long)."""
    env = {**os.environ, "CGO_ENABLED": "0"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(["go", *args], cwd=cwd, env=env, stdout=out, stderr=err)
        started = time.monotonic()
        while True:
            try:
                process.wait(30)
                break
            except subprocess.TimeoutExpired:
                if progress:
                    _log(f"{progress}: still working, {time.monotonic() - started:.0f}s so far")
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"go {' '.join(args)} failed in {cwd}:\n{err.read().decode(errors='replace')[-4000:]}")
        return out.read().decode()


def cached_binary_path(name: str, module_dir: Path, version: str) -> Path:
    """Where ``build_go_binary`` puts ``name``: one directory per version and pin hash."""
    return CACHE / "bin" / f"{name}-{version}-{_pin_hash(module_dir)}" / name


def build_go_binary(name: str, module_dir: Path, package: str, version: str, ldflags: str) -> Path:
    """Build ``package`` of the wrapper module in ``module_dir`` once per version and pin hash; reuse the cache."""
    binary = cached_binary_path(name, module_dir, version)
    target_dir = binary.parent
    if binary.exists():
        _log(f"{name} {version}: cached at {binary}")
        return binary
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain is needed to build the test bed (go not found on PATH)")
    target_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _log(f"{name} {version}: downloading modules ...")
    _go(["mod", "download"], module_dir, f"{name} {version}: downloading modules")
    downloaded = time.monotonic()
    _log(f"{name} {version}: modules downloaded in {downloaded - started:.1f}s; compiling ...")
    partial = target_dir / f".{name}.partial"
    _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package], module_dir,
        f"{name} {version}: compiling")
    partial.rename(binary)
    _log(f"{name} {version}: compiled in {time.monotonic() - downloaded:.1f}s -> {binary}")
    return binary


def _kube_ldflags(version: str) -> str:
    """Stamp the version into a kubernetes binary, as its own release build does (clients and servers check it)."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s -w",
            f"-X {stamp}.gitVersion={version}",
            f"-X {stamp}.gitMajor={major}",
            f"-X {stamp}.gitMinor={minor}",
            f"-X {stamp}.gitTreeState=clean",
            f"-X {stamp}.buildDate=1970-01-01T00:00:00Z",
        ]
    )


def build_kube_binary(name: str) -> tuple[Path, str]:
    """``k8s.io/kubernetes/cmd/<name>``, with the staging modules replaced by published releases in hack/kube.

    kube-apiserver and kube-controller-manager share that one wrapper module, so they are always the same
    kubernetes version.
    """
    module_dir = HACK / "kube"
    version = required_version(module_dir / "go.mod", "k8s.io/kubernetes")
    binary = build_go_binary(name, module_dir, f"k8s.io/kubernetes/cmd/{name}", version, _kube_ldflags(version))
    return binary, version


def build_etcd() -> tuple[Path, str]:
    """The etcd server, through a one-file wrapper around go.etcd.io/etcd/server/v3/etcdmain."""
    module_dir = HACK / "etcd"
    version = required_version(module_dir / "go.mod", "go.etcd.io/etcd/server/v3")
    return build_go_binary("etcd", module_dir, ".", version, "-s -w"), version


HELM_MODULE = "helm.sh/helm/v4"


def helm_version() -> str:
    return required_version(HACK / "helm" / "go.mod", HELM_MODULE)


def cached_helm() -> Path | None:
    """The cached helm binary, or None; never builds."""
    try:
        path = cached_binary_path("helm", HACK / "helm", helm_version())
    except (OSError, RuntimeError):
        return None
    return path if path.exists() else None


def helm_binary() -> Path:
    """The helm CLI from its published module (hack/helm), stamped with its version as helm's release does."""
    version = helm_version()
    ldflags = f"-s -w -X {HELM_MODULE}/internal/version.version={version}"
    return build_go_binary("helm", HACK / "helm", f"{HELM_MODULE}/cmd/helm", version, ldflags)


PROMETHEUS_MODULE = "github.com/prometheus/prometheus"


def promtool_version() -> str:
    return required_version(HACK / "promtool" / "go.mod", PROMETHEUS_MODULE)


def cached_promtool() -> Path | None:
    """The cached promtool binary, or None; never builds."""
    try:
        path = cached_binary_path("promtool", HACK / "promtool", promtool_version())
    except (OSError, RuntimeError):
        return None
    return path if path.exists() else None


def prometheus_release(module_version: str) -> str:
    """The Prometheus release of a module version: v0.316.0 is 3.16.0 (from 3.0 on, the module's minor is
    major*100 + minor), v0.55.1 is 2.55.1."""
    match = re.fullmatch(r"v0\.(\d+)\.(\d+)", module_version)
    if not match:
        raise RuntimeError(f"{module_version} is not a Prometheus module version (v0.<minor>.<patch>)")
    minor, patch = int(match.group(1)), match.group(2)
    return f"{minor // 100}.{minor % 100}.{patch}" if minor >= 300 else f"2.{minor}.{patch}"


def promtool_binary() -> Path:
    """promtool from the published prometheus module (hack/promtool), stamped as Prometheus's release does."""
    version = promtool_version()
    ldflags = f"-s -w -X github.com/prometheus/common/version.Version={prometheus_release(version)}"
    return build_go_binary("promtool", HACK / "promtool", f"{PROMETHEUS_MODULE}/cmd/promtool", version, ldflags)


def _is_crd(path: Path) -> bool:
    return any(
        isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        for doc in yaml.safe_load_all(path.read_text())
    )


def copy_crds() -> Path:
    """Copy the pinned upstream CRDs from the Go module cache; never from a hand-made copy."""
    pins = yaml.safe_load((REPO / "crds" / "upstream.yaml").read_text())
    key = "-".join(f"{name}-{pin['version']}" for name, pin in sorted(pins.items()))
    target = CACHE / "crds" / key
    if (target / ".complete").exists():
        _log(f"CRDs: cached at {target}")
        return target
    started = time.monotonic()
    module_dir = HACK / "crds"
    for name, pin in pins.items():
        go_mod_version = required_version(module_dir / "go.mod", pin["module"])
        if go_mod_version != pin["version"]:
            raise RuntimeError(
                f"crds/upstream.yaml pins {pin['module']} {pin['version']} but hack/crds/go.mod has "
                f"{go_mod_version}; change both together"
            )
        _go(["mod", "download", pin["module"]], module_dir)
        source = Path(_go(["list", "-m", "-f", "{{.Dir}}", pin["module"]], module_dir).strip()) / pin["path"]
        dest = target / name
        dest.mkdir(parents=True, exist_ok=True)
        copied = 0
        for manifest in sorted(source.glob("*.yaml")):
            if _is_crd(manifest):
                shutil.copyfile(manifest, dest / manifest.name)
                copied += 1
        if copied == 0:
            raise RuntimeError(f"no CRDs found in {source}")
        _log(f"CRDs: {copied} from {pin['module']} {pin['version']} ({pin['path']})")
    (target / ".complete").write_text("ok\n")
    _log(f"CRDs: copied in {time.monotonic() - started:.1f}s -> {target}")
    return target


def ensure_artifacts() -> Artifacts:
    """Build whatever is missing from the cache and return the paths of everything."""
    kube, kube_version = build_kube_binary("kube-apiserver")
    controller_manager, _ = build_kube_binary("kube-controller-manager")
    etcd, etcd_version = build_etcd()
    from .conformance_build import echo_basic_binary  # local: that module imports this one

    return Artifacts(kube, controller_manager, etcd, copy_crds(), kube_version, etcd_version, echo_basic_binary(),
                     helm_binary(), promtool_binary())


def cached_artifacts() -> Artifacts | None:
    """The cached artifacts if every part is already built; never starts a build."""
    try:
        kube_version = required_version(HACK / "kube" / "go.mod", "k8s.io/kubernetes")
        etcd_version = required_version(HACK / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3")
        pins = yaml.safe_load((REPO / "crds" / "upstream.yaml").read_text())
    except (OSError, RuntimeError):
        return None
    kube = cached_binary_path("kube-apiserver", HACK / "kube", kube_version)
    controller_manager = cached_binary_path("kube-controller-manager", HACK / "kube", kube_version)
    etcd = cached_binary_path("etcd", HACK / "etcd", etcd_version)
    crds = CACHE / "crds" / "-".join(f"{name}-{pin['version']}" for name, pin in sorted(pins.items()))
    from .conformance_build import cached_echo_basic  # local: that module imports this one

    echo_basic = cached_echo_basic()
    helm = cached_helm()
    promtool = cached_promtool()
    if (kube.exists() and controller_manager.exists() and etcd.exists() and (crds / ".complete").exists()
            and echo_basic is not None and helm is not None and promtool is not None):
        return Artifacts(kube, controller_manager, etcd, crds, kube_version, etcd_version, echo_basic, helm,
                         promtool)
    return None


def main() -> int:
    started = time.monotonic()
    try:
        artifacts = ensure_artifacts()
    except RuntimeError as error:
        print(f"[testbed-build] FAILED: {error}", file=sys.stderr)
        return 1
    _log(
        f"ready in {time.monotonic() - started:.1f}s: kube-apiserver and kube-controller-manager "
        f"{artifacts.kube_version}, etcd {artifacts.etcd_version}, helm {helm_version()}, "
        f"promtool {promtool_version()}, "
        f"CRDs in {artifacts.crd_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
