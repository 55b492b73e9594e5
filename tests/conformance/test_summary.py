"""The conformance harness reads the suite's report and log correctly, and passes the flags it documents."""

from __future__ import annotations

from pathlib import Path

from mcgw.semantics.gateway.features import SUPPORTED_FEATURES
from tests.conformance.harness import Options, default_features, mcgw_config, suite_argv
from tests.conformance.summary import claimed_failures, read_log, read_report, render

# Shapes copied from a real run of the v1.6.3 suite binary (-test.v), names shortened.
SETUP_FAILURE = """=== RUN   TestConformance
    conformance.go:117: Running conformance tests with:
    helpers.go:285: 2026-12-01T20:26:23.37553339Z: infra/gw Gateway not Programmed yet
    helpers.go:285: 2026-12-01T20:26:23.47553339Z: infra/gw Gateway not Programmed yet
    conformance.go:121:
        \tError Trace:\tsigs.k8s.io/gateway-api/conformance@v1.6.3/conformance.go:121
        \t            \t\t\t\t\tsigs.k8s.io/gateway-api/conformance@v1.6.3/conformance_test.go:26
        \tError:      \tReceived unexpected error:
        \t            \tfailed to get server groups: connection refused
        \tTest:       \tTestConformance
        \tMessages:   \terror initializing conformance suite
--- FAIL: TestConformance (0.00s)
FAIL
"""

TIMEOUT = """=== RUN   TestConformance
=== RUN   TestConformance/GatewayClassObservedGenerationBump
--- PASS: TestConformance/GatewayClassObservedGenerationBump (1.50s)
=== RUN   TestConformance/HTTPRouteSimpleSameNamespace
    http.go:120: 2026-12-01T20:27:43.19Z: Request failed, not ready yet: connection refused
panic: test timed out after 2m0s
\trunning tests:
\t\tTestConformance (2m0s)
\t\tTestConformance/HTTPRouteSimpleSameNamespace (1m58s)

goroutine 1 [running]:
"""

REPORT = """apiVersion: gateway.networking.k8s.io/v1
kind: ConformanceReport
gatewayAPIVersion: v1.6.3
profiles:
- name: GATEWAY-HTTP
  core:
    result: failure
    failedTests: [HTTPRouteSimpleSameNamespace]
    statistics: {Failed: 1, Passed: 35, Skipped: 0}
  extended:
    result: partial
    statistics: {Failed: 0, Passed: 0, Skipped: 0}
    unsupportedFeatures: [HTTPRouteCORS]
"""


def test_setup_failure_is_explained_from_the_log(tmp_path: Path) -> None:
    log = read_log(SETUP_FAILURE)
    assert log.overall == ("FAIL", 0.0)
    assert log.tests == {}
    assert log.errors == ["last logged: infra/gw Gateway not Programmed yet",
                          "Error: Received unexpected error: failed to get server groups: connection refused | "
                          "Messages: error initializing conformance suite"]
    text = render(None, log, 1.0, 2.0, tmp_path / "r.yaml", tmp_path / "suite.log", 1)
    assert "before any conformance test ran" in text
    assert "no report was written" in text
    assert claimed_failures(None, log) == ["(no report)"]
    # A failed setup still writes a report, with ``profiles: null``: that is no pass either.
    empty = tmp_path / "empty.yaml"
    empty.write_text("kind: ConformanceReport\nprofiles: null\n")
    assert read_report(empty) == []
    assert claimed_failures(read_report(empty), log) == ["(no test results in the report)"]
    assert "the report has no test results" in render([], log, 1.0, 2.0, empty, tmp_path / "suite.log", 1)


def test_timeout_names_what_was_running(tmp_path: Path) -> None:
    log = read_log(TIMEOUT)
    assert log.tests == {"GatewayClassObservedGenerationBump": ("PASS", 1.5)}
    assert log.timed_out_after == "2m0s"
    assert log.running_at_timeout == ["TestConformance (2m0s)", "TestConformance/HTTPRouteSimpleSameNamespace (1m58s)"]
    assert log.errors == ["last logged: Request failed, not ready yet: connection refused"]
    text = render(None, log, 120.0, 130.0, tmp_path / "r.yaml", tmp_path / "suite.log", 1)
    assert "hit -test.timeout after 2m0s" in text
    assert "HTTPRouteSimpleSameNamespace (1m58s)" in text


def test_report_counts_per_profile_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "report.yaml"
    path.write_text(REPORT)
    parts = read_report(path)
    assert [(p.profile, p.part, p.passed, p.failed, p.skipped) for p in parts] == [
        ("GATEWAY-HTTP", "core", 35, 1, 0), ("GATEWAY-HTTP", "extended", 0, 0, 0)]
    assert claimed_failures(parts, read_log("")) == ["HTTPRouteSimpleSameNamespace"]
    text = render(parts, read_log(""), 10.0, 20.0, path, tmp_path / "suite.log", 1)
    assert "failed (GATEWAY-HTTP core): HTTPRouteSimpleSameNamespace" in text


def test_suite_flags() -> None:
    profiles = ["GATEWAY-HTTP", "GATEWAY-GRPC", "GATEWAY-TLS", "GATEWAY-TCP", "GATEWAY-UDP"]
    options = Options(profiles=profiles, supported_features=default_features(profiles),
                      version="v0.1.0", contact="a@b", run_test="HTTPRouteSimpleSameNamespace",
                      extra_args=["--debug"])
    argv = suite_argv(Path("/bin/suite"), options, Path("/r.yaml"))
    assert argv[:4] == ["/bin/suite", "-test.run=^TestConformance$", "-test.v", "-test.timeout=60m"]
    claimed = next(a for a in argv if a.startswith("--supported-features=")).split("=", 1)[1].split(",")
    # The profiles' core features, then exactly what mcgw's GatewayClasses publish.
    assert claimed[:7] == ["Gateway", "ReferenceGrant", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"]
    assert set(claimed) == set(SUPPORTED_FEATURES)
    assert "--run-test=HTTPRouteSimpleSameNamespace" in argv
    assert "--report-output=/r.yaml" in argv
    assert "--cleanup-base-resources=true" in argv
    assert argv[-1] == "--debug"
    assert options.partial


def test_mcgw_config_merges_extra_settings() -> None:
    config = mcgw_config({}, "198.18.0.1:1", "127.0.0.1:2", {"xds": {"tls": {"cert": "c"}}, "lostClusterTtl": 5})
    assert config["xds"] == {"listen": "198.18.0.1:1", "tls": {"cert": "c"}}
    assert config["leaderElection"] == {"enabled": False}
    assert config["lostClusterTtl"] == 5
