"""The controls rows' outputs (``--controls``): the tables, the JSON and the PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.testbed.load import per_second

from .controls import SCENARIO_TITLES, ControlResult, share_series
from .report import COLOURS


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _aligned(rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(row)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def survivor_shares(metrics: dict[str, Any]) -> dict[str, float]:
    """Per restarted pod: the share of east's answers its surviving sibling gave while it was down."""
    found = {}
    for pod in metrics["per_pod"]:
        others = {name: share for name, share in pod["down"]["local_share_by_pod"].items() if name != pod["pod"]}
        found[pod["pod"]] = round(sum(others.values()), 4)
    return found


def table(results: Sequence[ControlResult]) -> str:
    lines: list[str] = []
    rolling = [r for r in results if r.row.scenario == "rolling-restart"]
    if rolling:
        lines += ["", SCENARIO_TITLES["rolling-restart"]]
        rows: list[tuple[str, ...]] = [("policy", "requests", "failed", "left east", "on a retry", "first try",
                                        "peak 250 ms", "survivor's share of east")]
        for r in rolling:
            m, whole = r.metrics, r.metrics["restart"]
            survivors = ", ".join(f"{_percent(v)} ({pod} down)" for pod, v in survivor_shares(m).items())
            rows.append((r.row.title, str(whole["requests"]), str(whole["failed"]), str(whole["left_local"]),
                         str(whole["left_local_on_retry"]), str(whole["left_local_first_try"]),
                         _percent(m["peak_left_local_share_250ms"]), survivors))
        lines += _aligned(rows)
    gradual = [r for r in results if r.row.scenario == "gradual-loss"]
    if gradual:
        lines += ["", SCENARIO_TITLES["gradual-loss"] + ": share sent to the next level"]
        rows = [("policy", "step", "s", "capacity lost", "expected", "Envoy's view", "measured", "failed")]
        for r in gradual:
            for step in r.metrics["steps"]:
                if step["window"] is None:
                    continue
                rows.append((r.row.title, step["step"], f"{step['from_s']:.1f}-{step['to_s']:.1f}",
                             _percent(step["capacity_lost"]), _percent(step["expected_share"]),
                             _percent(step["envoy_view_share"]), _percent(step["measured_share"]),
                             str(step["window"]["failed"])))
        lines += _aligned(rows, left=3)
    down = [r for r in results if r.row.scenario == "allowed-down"]
    if down:
        lines += ["", SCENARIO_TITLES["allowed-down"]]
        rows = [("policy", "requests", "failed", "by status", "failed p50/p99/max ms", "< per-try timeout",
                 "served", "reached excluded", "shift s", "failback s")]
        for r in down:
            m = r.metrics
            latency = m["failed_latency_ms"]
            reached = m["reached_excluded"]
            rows.append((r.row.title, str(m["during"]["requests"]), str(m["during"]["failed"]),
                         " ".join(f"{k}:{v}" for k, v in m["during"]["failures_by_status"].items()) or "-",
                         f"{latency['p50']}/{latency['p99']}/{latency['max']}",
                         f"{m['failed_within_per_try_timeout']} of {m['during']['failed']}",
                         " ".join(f"{k}:{v}" for k, v in sorted(m["during"]["served"].items())) or "-",
                         "-" if not m["excluded"] else f"{reached['answered_by_excluded']} answered, "
                         f"{reached['access_log_upstream_in_excluded']} logged, "
                         f"{reached['envoy_hosts_in_excluded']} hosts",
                         "-" if m["shift_s"] is None else f"{m['shift_s']:.2f}",
                         "never" if m["failback_s"] is None else f"{m['failback_s']:.2f}"))
        lines += _aligned(rows)
    capacity = [r for r in results if r.row.scenario == "capacity-step"]
    if capacity:
        lines += ["", SCENARIO_TITLES["capacity-step"] + ": share answered past east"]
        rows = [("policy", "requests", "failed", "expected", "during the surge", "after the drop",
                 "first past east s", "steady from s", "back s")]
        for r in capacity:
            m = r.metrics
            rows.append((r.row.title, str(m["requests"]), str(m["failed"]), _percent(m["expected_share_during_surge"]),
                         _percent(m["measured_share_during_surge"]), _percent(m["measured_share_after_drop"]),
                         str(m["first_answer_past_east_s"]), str(m["steady_share_from_s"]),
                         str(m["last_answer_past_east_after_drop_s"])))
        lines += _aligned(rows)
    return "\n".join(lines)


def _marks(ax: Any, marks: dict[str, float]) -> None:
    for key, at in marks.items():
        style = ("-" if key.startswith(("kill", "fault")) else "--" if key.startswith(("restarted", "restored"))
                 else "-." if key.startswith(("ready_", "not_ready_")) else ":" if key.startswith("healthy") else None)
        if style is not None and key != "restarted_all":
            ax.axvline(at, color="black", linestyle=style, linewidth=0.7, alpha=0.6)


def plot(results: Sequence[ControlResult], clusters: Sequence[str], path: Path, title: str) -> None:
    """Rows: rolling restart (answers/s by cluster, east's pods from the access log), gradual loss (share sent on
    per 250 ms against the capacity lost), allowed clusters down (answers/s, and the failed requests' latency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    scenarios = list(dict.fromkeys(r.row.scenario for r in results))
    columns = max(sum(1 for r in results if r.row.scenario == s) + (s == "allowed-down") for s in scenarios)
    figure, axes = plt.subplots(len(scenarios), columns, figsize=(5.2 * columns, 3.1 * len(scenarios)),
                                squeeze=False)
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(clusters)}
    for row_index, scenario in enumerate(scenarios):
        runs = [r for r in results if r.row.scenario == scenario]
        for column, result in enumerate(runs):
            ax = axes[row_index][column]
            if scenario == "gradual-loss":
                _share_panel(ax, result)
            else:
                _rate_panel(ax, result, clusters, colours, pods=scenario == "rolling-restart")
            _marks(ax, result.marks)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_xlabel("seconds", fontsize=7)
        if scenario == "allowed-down":
            _latency_panel(axes[row_index][len(runs)], runs)
            used = len(runs) + 1
        else:
            used = len(runs)
        for column in range(used, columns):
            axes[row_index][column].axis("off")
    handles = [Line2D([], [], color=colours[name], label=f"answered by {name}") for name in clusters]
    handles += [Line2D([], [], color="red", alpha=0.5, linewidth=4, label="failed/s"),
                Line2D([], [], color="purple", label="share sent on (250 ms)"),
                Line2D([], [], color="black", drawstyle="steps-post", label="expected: the policy over capacity lost"),
                Line2D([], [], color="grey", linestyle=":", label="Envoy's view: dead or not ready, listed UNHEALTHY"),
                Line2D([], [], color="black", linewidth=0.7, label="kill"),
                Line2D([], [], color="black", linewidth=0.7, linestyle="--", label="restarted"),
                Line2D([], [], color="black", linewidth=0.7, linestyle="-.", label="kubelet: (not) ready"),
                Line2D([], [], color="black", linewidth=0.7, linestyle=":", label="healthy in Envoy")]
    figure.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 0.97))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _rate_panel(ax: Any, result: ControlResult, clusters: Sequence[str], colours: dict[str, str],
                pods: bool) -> None:
    buckets = per_second(result.samples, 0.25, clusters)
    for name, rates in buckets.by_cluster.items():
        ax.plot(buckets.starts, rates, drawstyle="steps-post", color=colours.get(name, "grey"), linewidth=1.2)
    if any(buckets.failed):
        ax.fill_between(buckets.starts, buckets.failed, step="post", color="red", alpha=0.35)
    m = result.metrics
    if pods:  # east's answers per pod
        names = sorted({s.pod for s in result.samples if s.ok and s.cluster == "east"} - {""})
        for index, pod in enumerate(names):
            counts = [0.0] * len(buckets.starts)
            for sample in result.samples:
                slot = int(sample.sent / 0.25)
                if sample.ok and sample.pod == pod and slot < len(counts):
                    counts[slot] += 4
            ax.plot(buckets.starts, counts, drawstyle="steps-post", color=colours["east"], linewidth=0.8,
                    linestyle=("--", ":")[index % 2], label=pod)
        ax.legend(fontsize=6, loc="center right", frameon=False)
        ax.set_title(f"rolling restart: {result.row.title}\n{m['failed']} failed, {m['left_local']} answered "
                     f"outside east", fontsize=8)
    elif result.row.scenario == "capacity-step":
        ax.set_title(f"load 100 -> 400 -> 100 req/s, east's capacity 200: {result.row.title}\n"
                     f"{_percent(m['measured_share_during_surge'])} past east during the surge, "
                     f"{m['failed']} failed", fontsize=8)
    else:
        during = m["during"]
        ax.set_title(f"east and west down: {result.row.title}\n{during['failed']} failed of {during['requests']}, "
                     f"{m['reached_excluded']['answered_by_excluded']} answered by an excluded cluster", fontsize=8)
    ax.set_ylabel("answers/s", fontsize=7)


def _share_panel(ax: Any, result: ControlResult) -> None:
    m = result.metrics
    series = share_series(result.samples, "east", 0.0, result.marks["end"], 0.25)
    ax.plot([t for t, _ in series], [100 * (v or 0.0) for _, v in series], drawstyle="steps-post", color="purple",
            linewidth=1.2)
    starts = [s["from_s"] for s in m["steps"]] + [result.marks["end"]]
    expected = [100 * s["expected_share"] for s in m["steps"]]
    view = [100 * s["envoy_view_share"] for s in m["steps"]]
    ax.plot(starts, [*expected, expected[-1]], drawstyle="steps-post", color="black", linewidth=1.0)
    ax.plot(starts, [*view, view[-1]], drawstyle="steps-post", color="grey", linestyle=":", linewidth=1.2)
    measured = ", ".join(f"{100 * s['measured_share']:.0f}" for s in m["steps"]
                         if s["dead"] and s["measured_share"] is not None)
    ax.set_title(f"gradual loss (4 in east): {result.row.title}\nshare sent on, %: {measured}; "
                 f"{m['failed']} failed", fontsize=8)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("% answered outside east", fontsize=7)


def _latency_panel(ax: Any, runs: Sequence[ControlResult]) -> None:
    from matplotlib.lines import Line2D

    handles = []
    for index, result in enumerate(runs):
        fault, restore = result.marks["fault"], result.marks["restore"]
        sent = [s for s in result.samples if fault <= s.sent < restore]
        colour = COLOURS[(index + 3) % len(COLOURS)]
        for ok, marker in ((True, "."), (False, "x")):
            chosen = [s for s in sent if s.ok is ok]
            ax.scatter([s.sent for s in chosen], [1000 * s.latency for s in chosen], s=4, marker=marker,
                       color=colour, alpha=0.5, linewidths=0.6)
        handles.append(Line2D([], [], color=colour, marker="o", linestyle="", label=result.row.title))
    per_try = runs[0].metrics["per_try_timeout_ms"]
    ax.axhline(per_try, color="black", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(0.1, 50_000)
    ax.text(ax.get_xlim()[0], per_try * 1.25, f" per-try timeout {per_try} ms", fontsize=7)
    ax.set_title("east and west down: latency of each request sent until the restore\n(x failed, . answered)",
                 fontsize=8)
    ax.set_ylabel("ms", fontsize=7)
    ax.set_xlabel("seconds", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=6, frameon=False, loc="upper right")
