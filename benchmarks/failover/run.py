"""Set up the test bed, run every policy against every fault, write the JSON and the PNG, print the summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks._machine import machine
from mcgw.dataplane.process import envoy_binary
from mcgw.support.logs import configure_logging
from mcgw.translate.clusters import overprovisioning_factor
from tests.e2e.testbed import Artifacts, ClusterSet, can_create_namespaces, ensure_artifacts, start_clusterset
from tests.e2e.testbed.clusterset import EchoBackend

from . import __doc__ as package_doc
from . import controls_report, report
from .controls import LOCAL_BACKENDS, ROWS, SCENARIOS, ControlResult, ControlTiming, run_control
from .scenario import FAULTS, POLICIES, PolicyMode, Progress, RunResult, Stack, Timing, applies, run_one
from .stacks import EmulatedStack, settings_for

RESULTS = Path(__file__).resolve().parents[1] / "results"
LOCAL, ORDER = "east", ["east", "west", "central"]
BACKENDS_PER_CLUSTER = 2


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=[p.key for p in POLICIES],
                        choices=[p.key for p in POLICIES])
    parser.add_argument("--faults", nargs="+", default=list(FAULTS), choices=FAULTS)
    parser.add_argument("--rate", type=float, default=Timing.rate,
                        help="requests per second, open loop (gRPC rows: calls; TCP rows: new connections)")
    parser.add_argument("--hold", type=float, default=Timing.hold, help="seconds between the fault and the restore")
    parser.add_argument("--emulate", action="store_true",
                        help="serve every policy row from the benchmark's own translation instead of mcgw")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for NAME.json and NAME.png")
    parser.add_argument("--name", default=None,
                        help="file name of the results (default failover, with --controls failover-controls; "
                             "failover-tcp for the TCP rows run alone)")
    parser.add_argument("--controls", nargs="*", choices=SCENARIOS, metavar="SCENARIO",
                        help="run FailoverPolicy v1alpha2's control rows instead, each against mcgw's defaults: "
                             f"{', '.join(SCENARIOS)} (none named: all)")
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "failover" if args.controls is None else "failover-controls"
    if args.controls is not None and args.emulate:
        parser.error("--controls measures mcgw itself: the emulation has no FailoverPolicy v1alpha2")
    return args


def _envoy_version() -> str:
    result = subprocess.run([str(envoy_binary()), "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"/(\d+\.\d+\.\d+)/", result.stdout)
    return found.group(1) if found else result.stdout.strip()[-120:]


def _plain(value: Any) -> Any:
    """Named tuples (mcgw's failover settings) as mappings, all the way down."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    return value


@contextlib.asynccontextmanager
async def _emulated(clusterset: ClusterSet, backends: dict[str, list[EchoBackend]],
                    protocol: str) -> AsyncIterator[EmulatedStack]:
    stack = EmulatedStack(clusterset, backends, LOCAL, ORDER, protocol)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@contextlib.asynccontextmanager
async def _mcgw(clusterset: ClusterSet, backends: dict[str, dict[str, list[EchoBackend]]]) -> AsyncIterator[Stack]:
    from .mcgw_stack import McgwStack

    async with McgwStack.running(clusterset, backends["http"], LOCAL, ORDER, backends.get("grpc"),
                                 backends.get("tcp")) as stack:
        yield stack


def _start_backends(clusterset: ClusterSet, protocol: str) -> dict[str, list[EchoBackend]]:
    """Echo backends in every cluster: HTTP ones (pods ``cart-*``), gRPC ones (pods ``rpc-*``) or the TCP rows'
    (pods ``db-*``: the same echo server, spoken to over the raw connection)."""
    if protocol == "tcp":
        return {name: [clusterset.start_echo(name, namespace="bench-failover", pod=f"db-{name}-{i}")
                       for i in range(BACKENDS_PER_CLUSTER)] for name in ORDER}
    if protocol == "grpc":
        return {name: [clusterset.start_grpc_echo(name, namespace="bench-failover", pod=f"rpc-{name}-{i}")
                       for i in range(BACKENDS_PER_CLUSTER)] for name in ORDER}
    return {name: [clusterset.start_echo(name, namespace="bench-failover", pod=f"cart-{name}-{i}")
                   for i in range(BACKENDS_PER_CLUSTER)] for name in ORDER}


async def _run(args: argparse.Namespace, clusterset: ClusterSet) -> tuple[list[RunResult], dict[str, Any]]:
    timing = Timing(rate=args.rate, hold=args.hold)
    policies = [p for p in POLICIES if p.key in args.policies]
    # HTTP backends always: mcgw's stack serves its HTTP route whatever rows run.
    protocols = ["http", *(p for p in ("grpc", "tcp") if any(policy.protocol == p for policy in policies))]
    backends = {protocol: _start_backends(clusterset, protocol) for protocol in protocols}
    progress = Progress(sum(applies(p.key, f) for p in policies for f in args.faults))
    results: list[RunResult] = []
    async with contextlib.AsyncExitStack() as stacks:
        emulated = {protocol: await stacks.enter_async_context(_emulated(clusterset, backends[protocol], protocol))
                    for protocol in protocols}
        ours: dict[str, Stack] = dict(emulated) if args.emulate else dict.fromkeys(
            protocols, await stacks.enter_async_context(_mcgw(clusterset, backends)))
        for policy in policies:
            stack: Stack = emulated[policy.protocol] if policy.flat else ours[policy.protocol]
            for fault in (f for f in args.faults if applies(policy.key, f)):
                results.append(await run_one(stack, clusterset, backends[policy.protocol][LOCAL], policy, fault,
                                             timing, progress))
    settings = {"rate_per_s": timing.rate, "warm_s": timing.warm, "hold_s": timing.hold, "tail_s": timing.tail,
                "apiserver_lost_lead_s": timing.lost_lead, "kubelet_not_ready_after_s": timing.not_ready_after,
                "kubelet_ready_after_s": timing.ready_after, "request_timeout_s": timing.timeout,
                "backends_per_cluster": BACKENDS_PER_CLUSTER, "local": LOCAL, "priority_order": ORDER,
                "stack": "emulated" if args.emulate else "mcgw"}
    return results, settings


def _cluster_config(results: list[RunResult], policy: str) -> Any:
    """The backend cluster as Envoy reported it in the policy's first run (config_dump)."""
    return next((r.envoy["cluster"] for r in results if r.policy == policy and r.envoy.get("cluster")), None)


def _policy_description(policy: PolicyMode) -> dict[str, Any]:
    if policy.flat:
        proxy = "; tcp_proxy, max_connect_attempts 1" if policy.protocol == "tcp" else ""
        return {"title": policy.title, "protocol": policy.protocol, "emulated_peer": True,
                "envoy": f"all endpoints at priority 0; no health checks, outlier detection or retries{proxy}"}
    settings = settings_for(policy, LOCAL, ORDER)
    return {"title": policy.title, "protocol": policy.protocol, "failover_policy_spec": policy.spec,
            "settings": _plain(settings), "overprovisioning_factor": overprovisioning_factor(settings)}


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.controls is None and not any(applies(policy, fault) for policy in args.policies for fault in args.faults):
        sys.exit("nothing to run: " + "; ".join(f"{s['policy']} with {s['fault']}: {s['reason']}"
                                                for s in report.not_run(args.policies, args.faults)))
    if importlib.util.find_spec("matplotlib") is None:
        sys.exit("the failover benchmark plots with matplotlib: pip install -e '.[bench]'")
    ok, why = can_create_namespaces()
    if not ok:
        sys.exit(f"the failover benchmark runs the real test bed: {why}")
    artifacts = ensure_artifacts()
    log_path = Path(tempfile.gettempdir()) / "mcgw-failover-benchmark.log"
    with log_path.open("w") as log:
        configure_logging("info", "text", stream=log)
        print(f"controller log: {log_path}", flush=True)
        if args.controls is not None:
            _measure_controls(args, artifacts)
        else:
            _measure(args, artifacts)


def _measure(args: argparse.Namespace, artifacts: Artifacts) -> None:
    with start_clusterset(names=ORDER, artifacts=artifacts) as clusterset:
        results, settings = asyncio.run(_run(args, clusterset))
    health_check_interval = settings_for(next(p for p in POLICIES if p.key == "defaults")).health_check
    interval_s = (health_check_interval.interval_ms if health_check_interval else 0) / 1000
    skipped = report.not_run([p.key for p in POLICIES if p.key in args.policies], args.faults)
    goals = {**report.goals(results, interval_s),
             **report.goals(results, interval_s, policy="grpc-defaults", prefix="gRPC "),
             **report.goals(results, interval_s, policy="tcp-defaults", prefix="TCP ")}
    document = {
        "benchmark": "failover",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "envoy": _envoy_version(),
        "settings": settings,
        "policies": {p.key: {**_policy_description(p), "envoy_cluster": _cluster_config(results, p.key)}
                     for p in POLICIES if p.key in args.policies},
        "goals": goals,
        "runs": [{"policy": r.policy, "fault": r.fault, "metrics": r.metrics,
                  "marks": {k: round(v, 3) for k, v in r.marks.items()},
                  "envoy_counters": {k: v for k, v in r.envoy.items() if k != "cluster"}}
                 for r in results],
        "not_run": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    timelines = {f"{r.policy}/{r.fault}": report.timeline(r, ORDER) for r in results}
    text = json.dumps(document, indent=2)
    # Timelines are long columns: one line each keeps the file readable and small.
    body = ",\n".join(f'    "{key}": {json.dumps(value, separators=(",", ":"))}' for key, value in timelines.items())
    (args.out / f"{args.name}.json").write_text(text[:-2] + ',\n  "timelines": {\n' + body + "\n  }\n}\n")
    title = (f"mcgw failover: {settings['rate_per_s']:g} req/s open loop, gateway in {LOCAL}, "
             f"priorities {' > '.join(ORDER)} ({settings['stack']})")
    report.plot(results, ORDER, args.out / f"{args.name}.png", title, skipped)
    print()
    print(report.table(results, skipped))
    for line in report.comparison(results):
        print(line)
    if goals:
        print("\ngoals (mcgw defaults; gRPC, TCP: those rows'):")
        for name, goal in goals.items():
            print(f"  {'met' if goal['met'] else 'NOT met':<8} {name}: {goal['measured']}")
    print(f"\nwrote {args.out / (args.name + '.json')} and {args.out / (args.name + '.png')}")



async def _run_controls(args: argparse.Namespace,
                        clusterset: ClusterSet) -> tuple[list[ControlResult], dict[str, Any]]:
    """The control rows over one mcgw: east gets as many backends as the row that needs most (the others put only
    their own number in east's EndpointSlice)."""
    from .mcgw_stack import McgwStack

    timing = ControlTiming(rate=args.rate)
    rows = [row for row in ROWS if not args.controls or row.scenario in args.controls]
    most = max(LOCAL_BACKENDS[row.scenario] for row in rows)
    backends = {name: [clusterset.start_echo(name, namespace="bench-failover", pod=f"cart-{name}-{i}")
                       for i in range(most if name == LOCAL else BACKENDS_PER_CLUSTER)] for name in ORDER}
    progress = Progress(len(rows))
    results = []
    async with McgwStack.running(clusterset, backends, LOCAL, ORDER) as stack:
        for row in rows:
            results.append(await run_control(stack, clusterset, backends, row, timing, progress))
    settings = {"rate_per_s": timing.rate, "warm_s": timing.warm, "rolling_down_s": timing.down,
                "rolling_gap_s": timing.gap, "gradual_step_s": timing.step, "allowed_down_hold_s": timing.hold,
                "tail_s": timing.tail, "share_settle_s": timing.settle,
                "kubelet_not_ready_after_s": timing.not_ready_after, "kubelet_ready_after_s": timing.ready_after,
                "request_timeout_s": timing.timeout, "local_backends_per_scenario": LOCAL_BACKENDS,
                "backends_per_other_cluster": BACKENDS_PER_CLUSTER, "local": LOCAL, "priority_order": ORDER,
                "stack": "mcgw"}
    return results, settings


def _control_summary(result: ControlResult) -> dict[str, Any]:
    """A row's headline figures (the full ones are in its metrics)."""
    m = result.metrics
    if result.row.scenario == "rolling-restart":
        return {"failed": m["failed"], "answered_outside_east_during_restart": m["left_local"],
                "of_them_on_a_retry": m["restart"]["left_local_on_retry"],
                "peak_share_outside_east_250ms": m["peak_left_local_share_250ms"],
                "survivor_share_of_east_while_sibling_down": controls_report.survivor_shares(m)}
    if result.row.scenario == "gradual-loss":
        return {"failed": m["failed"], "steps": [
            {"step": s["step"], "capacity_lost": s["capacity_lost"], "expected": s["expected_share"],
             "envoy_view": s["envoy_view_share"], "measured": s["measured_share"]}
            for s in m["steps"] if s["window"] is not None]}
    if result.row.scenario == "capacity-step":
        return {key: m[key] for key in ("failed", "capacity_req_per_s", "expected_share_during_surge",
                                        "measured_share_during_surge", "measured_share_after_drop",
                                        "first_answer_past_east_s", "steady_share_from_s",
                                        "last_answer_past_east_after_drop_s")}
    return {"failed_while_down": m["during"]["failed"], "failures_by_status": m["during"]["failures_by_status"],
            "failed_latency_ms": m["failed_latency_ms"], "failed_within_per_try_timeout":
            m["failed_within_per_try_timeout"], "served_while_down": m["during"]["served"],
            "reached_excluded": m["reached_excluded"]}


def _control_timeline(result: ControlResult) -> dict[str, Any]:
    """The main rows' timeline columns, and the answering pod of each request (an index into ``pods``, -1: none)."""
    pods = sorted(set(result.pods.values()))
    index = {pod: i for i, pod in enumerate(pods)}
    base = report.timeline(RunResult(result.row.policy.key, result.row.scenario, {}, {}, result.samples), ORDER)
    return {**base, "pods": pods, "pod": [index.get(s.pod, -1) for s in result.samples]}


def _measure_controls(args: argparse.Namespace, artifacts: Artifacts) -> None:
    with start_clusterset(names=ORDER, artifacts=artifacts) as clusterset:
        results, settings = asyncio.run(_run_controls(args, clusterset))
    policies = list({r.row.policy.key: r.row.policy for r in results}.values())
    document = {
        "benchmark": "failover-controls",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "envoy": _envoy_version(),
        "settings": settings,
        "policies": {p.key: {**_policy_description(p), "envoy_cluster": next(
            (r.envoy.get("cluster") for r in results if r.row.policy.key == p.key and r.envoy.get("cluster")), None)}
            for p in policies},
        "summary": {r.row.key: _control_summary(r) for r in results},
        "runs": [{"row": r.row.key, "scenario": r.row.scenario, "policy": r.row.policy.key,
                  "kubelet_reports": r.row.kubelet, "metrics": r.metrics,
                  "marks": {k: round(v, 3) for k, v in r.marks.items()},
                  "envoy_counters": {k: v for k, v in r.envoy.items() if k not in ("cluster", "hosts")},
                  "envoy_hosts_at_end": r.envoy.get("hosts", {})} for r in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2)
    timelines = {r.row.key: _control_timeline(r) for r in results}
    body = ",\n".join(f'    "{key}": {json.dumps(value, separators=(",", ":"))}' for key, value in timelines.items())
    (args.out / f"{args.name}.json").write_text(text[:-2] + ',\n  "timelines": {\n' + body + "\n  }\n}\n")
    title = (f"mcgw failover controls (FailoverPolicy v1alpha2): {settings['rate_per_s']:g} req/s open loop, "
             f"gateway in {LOCAL}, {' > '.join(ORDER)}")
    controls_report.plot(results, ORDER, args.out / f"{args.name}.png", title)
    print(controls_report.table(results))
    print(f"\nwrote {args.out / (args.name + '.json')} and {args.out / (args.name + '.png')}")
