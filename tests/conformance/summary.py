"""What a conformance run produced, read from the suite's report YAML and, failing that, its ``-test.v`` log.

The report is the official result, but the suite writes it from a test cleanup: a ``-test.timeout``
panic or a crash leaves none. The log is then the only record, so both are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# "    --- FAIL: TestConformance/HTTPRouteSimpleSameNamespace (12.34s)"
_RESULT_LINE = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (TestConformance(?:/\S+)?) \(([\d.]+)s\)")
_TIMEOUT_LINE = re.compile(r"^panic: test timed out after (\S+)")
# testify's failure block: "        \tError:      \tReceived unexpected error:" then indented continuation lines.
_LABEL_LINE = re.compile(r"^\s*\t(Error Trace|Error|Test|Messages):\s*\t?(.*)$")
_CONTINUATION = re.compile(r"^\s*\t\s+\t(.*)$")
# The suite's own log lines: "    helpers.go:285: 2026-12-01T20:26:23.37Z: infra/gw Gateway not Programmed yet".
_SUITE_LOG = re.compile(r"^\s+[\w.-]+\.go:\d+: \d{4}-\d\d-\d\dT[\d:.]+Z: (.*)$")


@dataclass
class PartResult:
    """One profile's core or extended result as the report states it."""

    profile: str
    part: str  # "core" or "extended"
    result: str
    passed: int
    failed: int
    skipped: int
    failed_tests: list[str] = field(default_factory=list)
    skipped_tests: list[str] = field(default_factory=list)
    supported_features: list[str] = field(default_factory=list)


@dataclass
class LogResult:
    """What the ``-test.v`` log says: per-test outcomes, a timeout, and testify's failure messages."""

    tests: dict[str, tuple[str, float]] = field(default_factory=dict)  # short name -> (PASS|FAIL|SKIP, seconds)
    overall: tuple[str, float] | None = None  # TestConformance itself
    timed_out_after: str | None = None
    running_at_timeout: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for status, _ in self.tests.values() if status == outcome)


def read_report(path: Path) -> list[PartResult]:
    """The per-profile results of a ConformanceReport (conformance.gateway.networking.k8s.io/v1)."""
    report: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    parts = []
    for profile in report.get("profiles") or []:
        for part in ("core", "extended"):
            status = profile.get(part)
            if not status:
                continue
            statistics = status.get("statistics") or {}
            parts.append(PartResult(
                profile=profile.get("name", "?"), part=part, result=status.get("result", "?"),
                passed=int(statistics.get("Passed", 0)), failed=int(statistics.get("Failed", 0)),
                skipped=int(statistics.get("Skipped", 0)), failed_tests=list(status.get("failedTests") or []),
                skipped_tests=list(status.get("skippedTests") or []),
                supported_features=list(status.get("supportedFeatures") or [])))
    return parts


def read_log(text: str, max_errors: int = 12) -> LogResult:
    """Per-test outcomes and the first ``max_errors`` testify failure messages of a ``-test.v`` log."""
    result = LogResult()
    lines = text.splitlines()
    block: list[str] = []
    label = ""
    recent: list[str] = []  # the suite's last distinct log messages: what it was waiting for when it failed
    for index, line in enumerate(lines):
        if (match := _SUITE_LOG.match(line)) and match.group(1) not in recent:
            recent = [*recent[-1:], match.group(1)]
        if match := _RESULT_LINE.match(line):
            status, name, seconds = match.group(1), match.group(2), float(match.group(3))
            if name == "TestConformance":
                result.overall = (status, seconds)
            else:
                result.tests[name.split("/", 1)[1]] = (status, seconds)
        elif match := _TIMEOUT_LINE.match(line):
            result.timed_out_after = match.group(1)
            if recent:
                result.errors.append(f"last logged: {' / '.join(m[:200] for m in recent)}")
            for following in lines[index + 1:index + 20]:
                stripped = following.strip()
                if not stripped or stripped.startswith("goroutine "):
                    break
                if stripped != "running tests:":
                    result.running_at_timeout.append(stripped)
        if match := _LABEL_LINE.match(line):
            if block:
                result.errors.append(" ".join(block))
                block = []
            label = match.group(1)
            if label == "Error Trace" and recent:
                result.errors.append(f"last logged: {' / '.join(m[:200] for m in recent)}")
                recent = []
            if label in ("Error", "Messages") and match.group(2).strip():
                block = [f"{label}: {match.group(2).strip()}"]
        elif (match := _CONTINUATION.match(line)) and label in ("Error", "Messages"):
            block.append(match.group(1).strip())
        else:
            label = ""
            if block:
                result.errors.append(" ".join(block))
                block = []
    if block:
        result.errors.append(" ".join(block))
    # "Error: ..." and its "Messages: ..." belong together, followed by what the suite logged last.
    merged: list[str] = []
    for error in result.errors:
        if error.startswith("last logged:") and merged and merged[-1].startswith("last logged:"):
            merged[-1] = error
        elif error.startswith("Messages:") and merged:
            merged[-1] = f"{merged[-1]} | {error}"
        else:
            merged.append(error)
    result.errors = merged[:max_errors]
    return result


def render(parts: list[PartResult] | None, log: LogResult, suite_seconds: float, total_seconds: float,
           report_path: Path, log_path: Path, exit_code: int | None) -> str:
    """The table printed at the end of ``make conformance``."""
    out = []
    if parts:
        out.append(f"{'profile':<16} {'part':<9} {'result':<8} {'passed':>6} {'failed':>6} {'skipped':>7}")
        for p in parts:
            out.append(f"{p.profile:<16} {p.part:<9} {p.result:<8} {p.passed:>6} {p.failed:>6} {p.skipped:>7}")
        out.append(f"{'total':<35} {sum(p.passed for p in parts):>6} {sum(p.failed for p in parts):>6} "
                   f"{sum(p.skipped for p in parts):>7}")
        for p in parts:
            if p.failed_tests:
                out.append(f"failed ({p.profile} {p.part}): {', '.join(p.failed_tests)}")
        out.append(f"report: {report_path}")
    else:
        what = "no report was written" if parts is None else "the report has no test results"
        out.append(f"{what} ({report_path}); from the log: {log.count('PASS')} passed, "
                   f"{log.count('FAIL')} failed, {log.count('SKIP')} skipped")
        failed = [name for name, (status, _) in log.tests.items() if status == "FAIL"]
        if failed:
            out.append(f"failed: {', '.join(failed)}")
    if log.timed_out_after:
        running = f"; still running: {', '.join(log.running_at_timeout)}" if log.running_at_timeout else ""
        setup = " (in its setup: no conformance test had started)" if not log.tests else ""
        out.append(f"the suite hit -test.timeout after {log.timed_out_after}{running}{setup}")
    if log.overall and log.overall[0] == "FAIL" and not log.tests:
        out.append("TestConformance failed before any conformance test ran (in its setup)")
    for error in log.errors:
        out.append(f"  {error[:400]}")
    code = "" if exit_code is None else f", exit code {exit_code}"
    out.append(f"suite run time {suite_seconds:.1f}s{code}; harness total {total_seconds:.1f}s; log: {log_path}")
    return "\n".join(out)


def claimed_failures(parts: list[PartResult] | None, log: LogResult) -> list[str]:
    """Claimed tests that failed (the report's, else the log's); a report without results counts as a failure.

    The suite writes a report with ``profiles: null`` when its setup failed, so an empty report is no pass.
    """
    if not parts:
        failed = [name for name, (status, _) in log.tests.items() if status == "FAIL"]
        return failed or ["(no report)" if parts is None else "(no test results in the report)"]
    return [name for p in parts for name in p.failed_tests] or [
        f"{p.profile} {p.part}" for p in parts if p.failed]
