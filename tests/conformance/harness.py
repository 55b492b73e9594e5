"""``make conformance``: the upstream Gateway API conformance suite against ``mcgw run`` on the test bed.

Builds what is missing (test bed, suite, echo-basic), starts a 3-cluster test bed and ``mcgw run``
against it, creates the GatewayClass, and runs the unmodified suite binary against the FIRST member
cluster (the suite knows one cluster only; mcgw serves all of them, as it would in production).
The suite's output goes to ``conformance/logs/<time>/suite.log``; the summary comes from its report.

Every knob is a command-line option with an environment variable default, so ``make conformance
CONFORMANCE_RUN_TEST=HTTPRouteSimpleSameNamespace`` works; see conformance/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from mcgw.semantics.gateway import CONTROLLER_NAME
from mcgw.semantics.gateway.features import SUPPORTED_FEATURES
from tests.conformance.summary import claimed_failures, read_log, read_report, render
from tests.e2e.testbed.build import REPO, ensure_artifacts
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.clusterset import start_clusterset
from tests.e2e.testbed.conformance_build import conformance_suite_binary, conformance_version, echo_basic_binary
from tests.e2e.testbed.loadbalancer import lb_pool, sample_addresses
from tests.e2e.testbed.network import can_create_namespaces
from tests.e2e.testbed.processes import ManagedProcess, free_port, wait_until

# What mcgw claims, per profile. A profile's core features are what ``--conformance-profiles`` turns on
# anyway; they are listed so that ``--supported-features`` says exactly what is claimed. The extended
# features are the ones mcgw's GatewayClasses publish in status.supportedFeatures (one list, in
# mcgw/semantics/gateway/features.py): a claimed feature's failing test fails `make conformance`.
PROFILE_CORE_FEATURES: dict[str, tuple[str, ...]] = {
    "GATEWAY-HTTP": ("Gateway", "ReferenceGrant", "HTTPRoute"),
    "GATEWAY-GRPC": ("Gateway", "ReferenceGrant", "GRPCRoute"),
    "GATEWAY-TLS": ("Gateway", "ReferenceGrant", "TLSRoute"),
    "GATEWAY-TCP": ("Gateway", "ReferenceGrant", "TCPRoute"),
    "GATEWAY-UDP": ("Gateway", "ReferenceGrant", "UDPRoute"),
}
# What `make conformance` runs: every profile whose core tests all pass.
DEFAULT_PROFILES = "GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP"
_CORE = {f for features in PROFILE_CORE_FEATURES.values() for f in features}
EXTENDED_FEATURES: tuple[str, ...] = tuple(f for f in SUPPORTED_FEATURES if f not in _CORE)

GW_API = "/apis/gateway.networking.k8s.io/v1"
# Lines of the suite's -test.v output worth showing live (everything is in the log file).
_PROGRESS = re.compile(r"^(=== RUN   TestConformance/|\s*--- (PASS|FAIL|SKIP)|.*Test Setup:|panic:|FAIL|ok |PASS$)"
                       r"|^\s*\t(Error|Messages):")


def _say(message: str) -> None:
    print(f"[conformance] {message}", flush=True)


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


@dataclass
class Options:
    """One run's settings; ``suite_argv`` turns them into the suite's flags."""

    profiles: list[str]
    supported_features: list[str]
    gateway_class: str = "mcgw"
    run_test: str = ""
    skip_tests: str = ""
    timeout: str = "60m"
    report: Path | None = None  # None: the official path for a full run, the log directory otherwise
    cleanup_base_resources: bool = True
    organization: str = "mcgw"
    project: str = "mcgw"
    url: str = "https://mcgw.io"
    version: str = ""
    contact: str = ""
    extra_args: list[str] = field(default_factory=list)
    mcgw_config: Path | None = None
    clusters: int = 3
    keep: bool = False
    verbose: bool = False

    @property
    def partial(self) -> bool:
        """A run that does not test everything claimed, so its report must not replace the official one."""
        return bool(self.run_test or self.skip_tests)


def official_report_path() -> Path:
    return REPO / "conformance" / "reports" / f"{conformance_version()}-mcgw.yaml"


def default_features(profiles: list[str]) -> list[str]:
    unknown = [p for p in profiles if p not in PROFILE_CORE_FEATURES]
    if unknown:
        raise ValueError(f"unknown conformance profile(s) {', '.join(unknown)}; known: "
                         f"{', '.join(PROFILE_CORE_FEATURES)}")
    features = [f for p in profiles for f in PROFILE_CORE_FEATURES[p]] + list(EXTENDED_FEATURES)
    return list(dict.fromkeys(features))


def suite_argv(binary: Path, options: Options, report: Path,
               addresses: tuple[list[str], list[str]] = ([], [])) -> list[str]:
    """The suite binary's command line: Go test flags first, then the suite's own.

    ``-test.run`` keeps to TestConformance: the package's other tests (conformance_options_test.go)
    read files relative to its source directory and rewrite the suite's flags.
    """
    argv = [
        str(binary), "-test.run=^TestConformance$", "-test.v", f"-test.timeout={options.timeout}",
        f"--gateway-class={options.gateway_class}",
        f"--conformance-profiles={','.join(options.profiles)}",
        f"--supported-features={','.join(options.supported_features)}",
        f"--cleanup-base-resources={str(options.cleanup_base_resources).lower()}",
        f"--report-output={report}",
        f"--organization={options.organization}", f"--project={options.project}", f"--url={options.url}",
        f"--version={options.version}", f"--contact={options.contact}",
    ]
    usable, unusable = addresses  # GatewayStaticAddresses asks for one of each
    argv += [f"--usable-address={a}" for a in usable[:1]] + [f"--unusable-address={a}" for a in unusable[:1]]
    if options.run_test:
        argv.append(f"--run-test={options.run_test}")
    if options.skip_tests:
        argv.append(f"--skip-tests={options.skip_tests}")
    return argv + options.extra_args


def mcgw_version() -> str:
    """The package version and the commit, e.g. ``v0.1.0-g29e36bc`` (``-dirty`` with local changes)."""
    version = f"v{importlib.metadata.version('mcgw')}"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return version
    return f"{version}-g{commit}{'-dirty' if dirty else ''}"


def _git_email() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        email = subprocess.run(["git", "config", "user.email"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.strip()
        if email:
            return email
    return "mcgw maintainers"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``: mappings merge key by key, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def mcgw_config(clusters: dict[str, MemberCluster], xds_listen: str, admin_listen: str,
                extra: dict[str, Any] | None = None, address_pools: list[str] | None = None) -> dict[str, Any]:
    """``mcgw run``'s config for the bed: every member, one replica (no leader election), provisioned Envoys
    dialling ``xds_listen``, static addresses only from the load balancers' pools, plus ``extra``."""
    config: dict[str, Any] = {
        "clusters": [{"name": name, "kubeconfig": str(c.kubeconfig), "context": name} for name, c in clusters.items()],
        "xds": {"listen": xds_listen},
        "admin": {"listen": admin_listen},
        "leaderElection": {"enabled": False},
    }
    if address_pools:
        config["provisioning"] = {"addressPools": address_pools}
    return _merge(config, extra or {})


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def _mcgw_diagnosis(admin_port: int) -> str:
    """Each member's availability from mcgw's /api/status: status is only written for available clusters."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/status", timeout=5) as response:
            clusters = json.loads(response.read()).get("clusters") or {}
    except (OSError, ValueError) as error:
        return f"(no /api/status: {error})"
    return "; ".join(f"{name} " + ("available" if c.get("available") else f"unavailable ({c.get('reason')})")
                     for name, c in sorted(clusters.items())) or "(no clusters in /api/status)"


def create_gateway_class(cluster: MemberCluster, name: str) -> None:
    body = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": CONTROLLER_NAME, "description": "mcgw, for the upstream conformance suite"}}
    try:
        cluster.request("POST", f"{GW_API}/gatewayclasses", body)
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise


def gateway_class_accepted(cluster: MemberCluster, name: str) -> bool:
    stored = cluster.request("GET", f"{GW_API}/gatewayclasses/{name}")
    conditions = (stored.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions)


def _follow(process: ManagedProcess, verbose: bool) -> None:
    """Print the suite's progress lines while it runs (its whole output is in its log)."""
    with process.log_path.open("r", errors="replace") as log:
        pending = ""
        while True:
            alive = process.alive()
            chunk = log.read()
            lines = (pending + chunk).split("\n")
            pending = lines.pop()
            for line in lines:
                if verbose or _PROGRESS.match(line):
                    print(f"  | {line}", flush=True)
            if not alive:
                if pending and (verbose or _PROGRESS.match(pending)):
                    print(f"  | {pending}", flush=True)
                return
            time.sleep(0.5)


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def _mcgw(config_path: Path, log_path: Path, admin_url: str) -> Iterator[ManagedProcess]:
    process = ManagedProcess("mcgw run", [sys.executable, "-m", "mcgw", "run", "--config", str(config_path)],
                             log_path, cwd=REPO)
    try:
        wait_until(lambda: _http_ok(f"{admin_url}/readyz"), 120, "mcgw run to be ready (/readyz)", process, 0.5)
        _say(f"mcgw run is ready (admin {admin_url}, log {log_path})")
        yield process
    finally:
        process.stop()


def run(options: Options) -> int:
    """The whole harness; returns the exit code (0 all claimed tests passed, 1 some failed, 2 set-up failed)."""
    started = time.monotonic()
    ok, why = can_create_namespaces()
    if not ok:
        _say(f"cannot build the test bed: {why}")
        return 2
    logdir = REPO / "conformance" / "logs" / time.strftime("%Y%m%d-%H%M%S")
    logdir.mkdir(parents=True, exist_ok=True)
    report = options.report or (logdir / "report.yaml" if options.partial else official_report_path())
    report = report.resolve()
    report.parent.mkdir(parents=True, exist_ok=True)
    extra = yaml.safe_load(options.mcgw_config.read_text()) if options.mcgw_config else None

    _say("building what is missing (test bed, conformance suite, echo-basic) ...")
    artifacts = ensure_artifacts()
    echo_basic_binary()  # the pod runner maps the echo-basic image to it (cached_echo_basic())
    suite = conformance_suite_binary()
    _say(f"built or cached in {time.monotonic() - started:.1f}s")

    suite_seconds = 0.0
    suite_started = time.time()
    exit_code: int | None = None
    suite_log = logdir / "suite.log"
    with start_clusterset(size=options.clusters, artifacts=artifacts) as bed:
        first_name, first = next(iter(bed.clusters.items()))
        xds_listen = f"{bed.network.host_address}:{free_port(bed.network.host_address)}"
        admin_port = free_port()
        config_path = logdir / "mcgw.yaml"
        pools = [str(net) for name in bed.clusters for net in lb_pool(bed.network, name).networks()]
        config_path.write_text(yaml.safe_dump(mcgw_config(bed.clusters, xds_listen, f"127.0.0.1:{admin_port}",
                                                          extra, pools), sort_keys=False))
        with _mcgw(config_path, logdir / "mcgw.log", f"http://127.0.0.1:{admin_port}") as controller:
            create_gateway_class(first, options.gateway_class)
            try:
                wait_until(lambda: gateway_class_accepted(first, options.gateway_class), 60,
                           f"GatewayClass {options.gateway_class} to be Accepted", controller, 0.5)
            except TimeoutError:
                # The suite would wait 180 s more and run nothing: say why here and stop.
                _say(f"FAILED: GatewayClass {options.gateway_class} ({CONTROLLER_NAME}) is not Accepted in "
                     f"{first_name} after 60s; mcgw says: {_mcgw_diagnosis(admin_port)}; log {controller.log_path}")
                return 1
            _say(f"GatewayClass {options.gateway_class} ({CONTROLLER_NAME}) is Accepted in {first_name}")
            argv = suite_argv(suite, options, report, sample_addresses(bed.network, first_name))
            _say(f"running the suite against {first_name} (KUBECONFIG={first.kubeconfig}):\n  {shlex.join(argv)}")
            _say(f"suite log: {suite_log}")
            suite_started = time.time()
            process = ManagedProcess("gateway-conformance", argv, suite_log,
                                     env={"KUBECONFIG": str(first.kubeconfig)}, cwd=logdir)
            try:
                _follow(process, options.verbose)
                exit_code = process.popen.wait()
            finally:
                process.stop()
                suite_seconds = time.time() - suite_started
            if options.keep:
                _say(f"keeping the test bed until Ctrl-C; kubeconfigs: "
                     f"{json.dumps({n: str(c.kubeconfig) for n, c in bed.clusters.items()})}")
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()

    fresh = report.exists() and report.stat().st_mtime >= suite_started
    parts = read_report(report) if fresh else None
    log = read_log(suite_log.read_text(errors="replace"))
    print(render(parts, log, suite_seconds, time.monotonic() - started, report, suite_log, exit_code), flush=True)
    failures = claimed_failures(parts, log)
    if failures or exit_code != 0:
        _say(f"FAILED: {', '.join(failures) or f'the suite exited with {exit_code}'}")
        return 1
    _say("every claimed test passed")
    return 0


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance", description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Arguments after -- (and CONFORMANCE_ARGS, shell-split) go to the suite binary unchanged, "
               "e.g. -- --debug --timeout-config-overrides=NamespacesMustBeReady:60")
    parser.add_argument("--profiles", default=_env("CONFORMANCE_PROFILES", DEFAULT_PROFILES),
                        help=f"comma-separated conformance profiles [CONFORMANCE_PROFILES, {DEFAULT_PROFILES}]")
    parser.add_argument("--supported-features", default=_env("CONFORMANCE_SUPPORTED_FEATURES"),
                        help="override the claimed features [CONFORMANCE_SUPPORTED_FEATURES; default: the "
                             "profiles' core features plus EXTENDED_FEATURES in tests/conformance/harness.py]")
    parser.add_argument("--run-test", default=_env("CONFORMANCE_RUN_TEST"),
                        help="one test by its short name, e.g. HTTPRouteSimpleSameNamespace [CONFORMANCE_RUN_TEST]")
    parser.add_argument("--skip-tests", default=_env("CONFORMANCE_SKIP_TESTS"),
                        help="comma-separated short names to skip [CONFORMANCE_SKIP_TESTS]")
    parser.add_argument("--timeout", default=_env("CONFORMANCE_TIMEOUT", "60m"),
                        help="the suite's -test.timeout [CONFORMANCE_TIMEOUT, 60m]")
    parser.add_argument("--report", type=Path, default=_env("CONFORMANCE_REPORT") or None,
                        help="--report-output [CONFORMANCE_REPORT; default conformance/reports/<suite version>"
                             "-mcgw.yaml, or the log directory for --run-test/--skip-tests runs]")
    parser.add_argument("--gateway-class", default=_env("CONFORMANCE_GATEWAY_CLASS", "mcgw"))
    parser.add_argument("--no-cleanup-base-resources", action="store_true",
                        default=bool(_env("CONFORMANCE_NO_CLEANUP")),
                        help="leave the suite's base resources in place [CONFORMANCE_NO_CLEANUP]")
    parser.add_argument("--mcgw-config", type=Path, default=_env("CONFORMANCE_MCGW_CONFIG") or None,
                        help="YAML merged over the generated mcgw run config [CONFORMANCE_MCGW_CONFIG]")
    parser.add_argument("--clusters", type=int, default=int(_env("CONFORMANCE_CLUSTERS", "3")))
    parser.add_argument("--keep", action="store_true", default=bool(_env("CONFORMANCE_KEEP")),
                        help="keep the test bed running after the suite until Ctrl-C [CONFORMANCE_KEEP]")
    parser.add_argument("--verbose", action="store_true", default=bool(_env("CONFORMANCE_VERBOSE")),
                        help="print all of the suite's output, not only progress [CONFORMANCE_VERBOSE]")
    for name, default in (("organization", "mcgw"), ("project", "mcgw"), ("url", "https://mcgw.io"),
                          ("version", ""), ("contact", "")):
        parser.add_argument(f"--{name}", default=_env(f"CONFORMANCE_{name.upper()}", default),
                            help=f"the report's implementation {name} [CONFORMANCE_{name.upper()}]")
    parser.add_argument("suite_args", nargs="*", help="passed to the suite binary (after --)")
    args = parser.parse_args(argv)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    features = ([f.strip() for f in args.supported_features.split(",") if f.strip()]
                if args.supported_features else default_features(profiles))
    return Options(
        profiles=profiles, supported_features=features, gateway_class=args.gateway_class, run_test=args.run_test,
        skip_tests=args.skip_tests, timeout=args.timeout, report=args.report,
        cleanup_base_resources=not args.no_cleanup_base_resources, organization=args.organization,
        project=args.project, url=args.url, version=args.version or mcgw_version(),
        contact=args.contact or _git_email(),
        extra_args=shlex.split(_env("CONFORMANCE_ARGS")) + list(args.suite_args), mcgw_config=args.mcgw_config,
        clusters=args.clusters, keep=args.keep, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(argv)
    except ValueError as error:
        _say(str(error))
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)  # so that `kill` tears the bed down as Ctrl-C does
    try:
        return run(options)
    except (KeyboardInterrupt, _Terminated):
        _say("interrupted; the test bed, mcgw and the suite were stopped")
        return 130
    except (RuntimeError, TimeoutError, OSError) as error:
        _say(f"set-up failed: {error}")
        return 2
