"""The benchmark's outputs: the summary table, the JSON (with every request's timeline) and the PNG."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.testbed.load import per_second

from .scenario import FAULT_TITLES, POLICIES, PROTOCOL_OF, RunResult, fault_title, not_applicable

POLICY_TITLES = {p.key: p.title for p in POLICIES}
COLOURS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def goals(results: Sequence[RunResult], health_check_interval_s: float, policy: str = "defaults",
          prefix: str = "") -> dict[str, Any]:
    """Issue 6's goals, checked against the mcgw-defaults runs (``policy`` "grpc-defaults": the gRPC rows',
    each goal's name after ``prefix``)."""
    by_fault = {r.fault: r.metrics for r in results if r.policy == policy}
    checks: dict[str, Any] = {}

    def check(name: str, fault: str, ok: bool | None, measured: Any) -> None:
        if fault in by_fault:
            checks[prefix + name] = {"met": ok, "measured": measured}

    for fault in ("backend-kill", "backend-503"):
        m = by_fault.get(fault)
        if m is None:
            continue
        check(f"{fault}: 0 failed requests", fault, m["failed"] == 0, m["failed"])
        check(f"{fault}: full shift within 1 s", fault, m["shift_s"] is not None and m["shift_s"] <= 1.0,
              m["shift_s"])
    if PROTOCOL_OF.get(policy) == "tcp":  # connections a dying backend had accepted are lost whatever the gateway does
        for fault in ("backend-kill", "apiserver-lost"):
            if (m := by_fault.get(fault)) is not None:
                check(f"{fault}: 0 failed new connections once the kill landed", fault,
                      m["failed_after_injected"] == 0,
                      {"after": m["failed_after_injected"], "while_killing": m["failed_while_injecting"]})
    if (m := by_fault.get("blackhole")) is not None:
        check("blackhole: full shift within 2 s with 0 failed", "blackhole",
              m["failed"] == 0 and m["shift_s"] is not None and m["shift_s"] <= 2.0,
              {"failed": m["failed"], "shift_s": m["shift_s"]})
    limit = health_check_interval_s + 1.0
    for fault, m in by_fault.items():
        check(f"{fault}: failback within {limit:g} s", fault, m["failback_s"] is not None and m["failback_s"] <= limit,
              m["failback_s"])
    return checks


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def not_run(policies: Sequence[str], faults: Sequence[str]) -> list[dict[str, str]]:
    """The combinations asked for that do not apply to their row, with why (the JSON's ``not_run``)."""
    return [{"policy": policy, "fault": fault, "reason": why} for policy in policies for fault in faults
            if (why := not_applicable(policy, fault)) is not None]


def table(results: Sequence[RunResult], skipped: Sequence[dict[str, str]] = ()) -> str:
    """One line per run; a combination in ``skipped`` (see ``not_run``) reads "not run", its reason below."""
    header = ("policy", "fault", "requests", "failed", "shift s", "failback s", "after Ready s", "p99 shift ms")
    rows = [header]
    for policy in dict.fromkeys([r.policy for r in results] + [s["policy"] for s in skipped]):
        rows += [(POLICY_TITLES.get(r.policy, r.policy), fault_title(r.policy, r.fault),
                  str(r.metrics["requests"]), str(r.metrics["failed"]), _seconds(r.metrics["shift_s"]),
                  _seconds(r.metrics["failback_s"]), _seconds(r.metrics["failback_after_ready_s"]),
                  "-" if r.metrics["p99_shift_ms"] is None else f"{r.metrics['p99_shift_ms']:.0f}")
                 for r in results if r.policy == policy]
        rows += [(POLICY_TITLES.get(policy, policy), fault_title(policy, s["fault"]), "not run", "-", "-", "-", "-",
                  "-") for s in skipped if s["policy"] == policy]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    reasons: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        reasons.setdefault((fault_title(s["policy"], s["fault"]), s["reason"]), []).append(
            POLICY_TITLES.get(s["policy"], s["policy"]))
    for (fault, reason), policies in reasons.items():
        lines.append(f"not run: {fault} for {', '.join(policies)} ({reason})")
    return "\n".join(lines)


def comparison(results: Sequence[RunResult]) -> list[str]:
    """mcgw's defaults against the flat peer row of the same run, fault by fault (HTTP, gRPC, then TCP)."""
    lines = []
    runs = {(r.policy, r.fault): r.metrics for r in results}
    for label, defaults, peer in (("", "defaults", "flat"), ("gRPC ", "grpc-defaults", "grpc-flat"),
                                  ("TCP ", "tcp-defaults", "tcp-flat")):
        for fault in FAULT_TITLES:
            ours, flat = runs.get((defaults, fault)), runs.get((peer, fault))
            if ours is None or flat is None:
                continue
            lines.append(f"{label}{fault_title(defaults, fault)}: failed requests mcgw {ours['failed']} vs flat "
                         f"{flat['failed']}; p99 during the shift {ours['p99_shift_ms']} ms vs "
                         f"{flat['p99_shift_ms']} ms")
    return lines


def timeline(result: RunResult, clusters: Sequence[str]) -> dict[str, Any]:
    """Every request of a run as columns (compact JSON): send time, latency, status, answering cluster."""
    index = {name: i for i, name in enumerate(clusters)}
    return {
        "clusters": list(clusters),
        "sent_ms": [round(s.sent * 1000) for s in result.samples],
        "latency_ms": [round(s.latency * 1000, 1) for s in result.samples],
        "status": [s.status for s in result.samples],
        "cluster": [index.get(s.cluster, -1) for s in result.samples],
    }


def plot(results: Sequence[RunResult], clusters: Sequence[str], path: Path, title: str,
         skipped: Sequence[dict[str, str]] = ()) -> None:
    """One panel per run: successful answers per second by answering cluster, failures in red, the
    fault and the restore as vertical lines; rows are policies, columns are faults. A combination in
    ``skipped`` gets a panel saying it was not run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys([r.policy for r in results] + [s["policy"] for s in skipped]))
    faults = list(dict.fromkeys([r.fault for r in results] + [s["fault"] for s in skipped]))
    figure, axes = plt.subplots(len(policies), len(faults), figsize=(4.2 * len(faults), 2.3 * len(policies)),
                                sharex=True, sharey=True, squeeze=False)
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(clusters)}
    for result in results:
        ax = axes[policies.index(result.policy)][faults.index(result.fault)]
        buckets = per_second(result.samples, 0.25, clusters)
        for name, rates in buckets.by_cluster.items():
            ax.plot(buckets.starts, rates, drawstyle="steps-post", color=colours.get(name, "grey"), label=name,
                    linewidth=1.2)
        if any(buckets.failed):
            ax.fill_between(buckets.starts, buckets.failed, step="post", color="red", alpha=0.35, label="failed")
        failed_at = [s.sent for s in result.samples if not s.ok]
        if failed_at:
            ax.scatter(failed_at, [0] * len(failed_at), marker="|", color="red", s=30, linewidths=0.8)
        for key, style in (("fault", "-"), ("restored", "--"), ("apiserver_lost", ":"),
                           ("kubelet_not_ready", "-."), ("kubelet_ready", "-.")):
            if key in result.marks:
                ax.axvline(result.marks[key], color="black", linestyle=style, linewidth=0.8, alpha=0.7)
        metrics = result.metrics
        ax.set_title(f"{POLICY_TITLES.get(result.policy, result.policy)}\n{fault_title(result.policy, result.fault)}: "
                     f"{metrics['failed']} failed, shift {_seconds(metrics['shift_s'])} s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for s in skipped:
        ax = axes[policies.index(s["policy"])][faults.index(s["fault"])]
        ax.set_title(f"{POLICY_TITLES.get(s['policy'], s['policy'])}\n{fault_title(s['policy'], s['fault'])}: "
                     "not run", fontsize=8)
        ax.text(0.5, 0.5, textwrap.fill(s["reason"], 46), transform=ax.transAxes, ha="center", va="center",
                fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("seconds", fontsize=8)
    for row in axes:
        row[0].set_ylabel("answers/s", fontsize=8)
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Artist] = [Line2D([], [], color=colours[name], label=f"answered by {name}") for name in clusters]
    handles += [Patch(color="red", alpha=0.35, label="failed requests/s (| each failure)"),
                Line2D([], [], color="black", label="fault"),
                Line2D([], [], color="black", linestyle="--", label="restored (backends answer)"),
                Line2D([], [], color="black", linestyle="-.", label="kubelet: not ready / ready"),
                Line2D([], [], color="black", linestyle=":", label="API server lost")]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.03, 1, 0.98))
    figure.savefig(path, dpi=90)
    plt.close(figure)
