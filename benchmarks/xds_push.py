"""xDS push benchmark: mcgw's server against go-control-plane, with real Envoys, in one run.

The workload is one gateway: a listener, one route configuration with 1,000 routes, 1,000 EDS
clusters and 10,000 endpoints. For each server, mode (SotW, delta) and Envoy count it measures
three cases: the first full push, one endpoint change, and one route change:

- time from publish until each Envoy has ACKed everything the publish caused (p50, p99, max);
- bytes the server sent; server CPU seconds; the server's peak RSS.

Both servers start from the same typed protobuf resources (read from the same files) and report
the same events (see ``_mcgw_bench_server.py`` and ``peers/go-control-plane``). Run from the
repository root after ``make test``::

    .venv/bin/python -m benchmarks.xds_push [--envoys 20 50] [--repeats 5]

It prints a table and writes ``benchmarks/results/xds_push.json``. The push cases run without load
reporting (the peer serves none). ``--lrs-only`` measures the cost of load reporting alone
(``benchmarks/results/xds_push_lrs.json``): mcgw's server with 50 Envoys (``--lrs-envoys``) holding the
full workload and getting one endpoint change a second for ``--lrs-seconds``, once with every Envoy
reporting all 1,000 clusters (then only 50 of them, as mcgw asks for a gateway's ServiceImport clusters
alone) each second and once without, in the same run: the server's CPU seconds and peak RSS, and their ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import queue
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message

from benchmarks._machine import machine
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, render_bootstrap
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from tests.e2e.testbed.build import REPO, build_go_binary, required_version
from xdsserver import message_from_dict

RESULTS = Path(__file__).resolve().parent / "results"
ROUTES = CLUSTERS = 1000
ENDPOINTS_PER_CLUSTER = 10
ALL_TYPES = frozenset({"Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"})
CASE_TYPES = {"full": ALL_TYPES, "endpoint": frozenset({"ClusterLoadAssignment"}),
              "route": frozenset({"RouteConfiguration"})}


# -- workload ----------------------------------------------------------------------------------------

def _cluster_name(i: int) -> str:
    return f"bench/svc-{i}/rule/0/backend/0"


def workload(listen_port: int, endpoint_port_of_500: int, header_of_500: str) -> list[Message]:
    """The gateway's resources; the two parameters are what the change cases toggle."""
    resources: list[Message] = []
    routes = []
    for i in range(CLUSTERS):
        resources.append(message_from_dict({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": _cluster_name(i),
            "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
        }))
        endpoints = []
        for j in range(ENDPOINTS_PER_CLUSTER):
            port = endpoint_port_of_500 if (i == 500 and j == 0) else 8080
            # Loopback addresses that nothing listens on: Envoy never sends traffic without requests.
            address = f"127.{1 + i // 250}.{i % 250}.{j + 1}"
            endpoints.append({"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}})
        resources.append(message_from_dict({
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": _cluster_name(i), "endpoints": [{"lb_endpoints": endpoints}],
        }))
        route: dict[str, Any] = {"match": {"prefix": f"/svc-{i}/"}, "route": {"cluster": _cluster_name(i)}}
        if i == 500:
            route["response_headers_to_add"] = [{"header": {"key": "x-bench", "value": header_of_500}}]
        routes.append(route)
    resources.append(message_from_dict({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "bench/gw/http",
        "virtual_hosts": [{"name": "bench/gw/http/*", "domains": ["*"], "routes": routes}],
    }))
    resources.append(message_from_dict({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "bench/gw/http",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                     ".HttpConnectionManager",
            "stat_prefix": "bench",
            "rds": {"route_config_name": "bench/gw/http", "config_source": {"ads": {}, "resource_api_version": "V3"}},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }}]}],
    }))
    return resources


def write_records(path: Path, messages: list[Message]) -> Path:
    with path.open("wb") as out:
        for message in messages:
            packed = any_pb2.Any()
            packed.Pack(message)
            data = packed.SerializeToString()
            out.write(struct.pack(">I", len(data)) + data)
    return path


# -- servers -----------------------------------------------------------------------------------------

def build_peer() -> Path:
    module = REPO / "benchmarks" / "peers" / "go-control-plane"
    version = required_version(module / "go.mod", "github.com/envoyproxy/go-control-plane")
    return build_go_binary("go-control-plane-peer", module, ".", version, "-s -w")


@dataclass
class Event:
    kind: str
    stream: str
    type: str
    size: int
    at_ns: int


@dataclass
class ServerProcess:
    """A benchmark server speaking the line protocol, with its events collected by a reader thread."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[str] = field(init=False)
    events: queue.Queue[Event | tuple[str, str]] = field(default_factory=queue.Queue)
    port: int = 0

    def __post_init__(self) -> None:
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      cwd=REPO, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        kind, value = self._control(60)
        if kind != "ready":
            raise RuntimeError(f"{self.name} did not start: {kind} {value}")
        self.port = int(value)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            parts = line.split()
            if parts and parts[0] == "push":
                self.events.put(Event("push", parts[1], parts[2], int(parts[3]), int(parts[4])))
            elif parts and parts[0] in ("ack", "nack"):
                self.events.put(Event(parts[0], parts[1], parts[2], 0, int(parts[3])))
            elif parts:
                self.events.put((parts[0], " ".join(parts[1:])))

    def _control(self, within: float) -> tuple[str, str]:
        deadline = time.monotonic() + within
        while True:
            item = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, tuple):
                return item

    def load(self, path: Path) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(f"load {path}\n")
        self.popen.stdin.flush()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_case(server: ServerProcess, path: Path, case: str, envoys: int, quiet: float = 0.3,
                 within: float = 300.0) -> dict[str, Any]:
    """Publish ``path`` and wait until every Envoy has ACKed every push it caused."""
    cpu_before = server.cpu_seconds()
    server.load(path)
    published = None
    pushes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    acks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last_ack: dict[str, int] = {}
    sent_bytes = nacks = 0
    deadline = time.monotonic() + within
    settled_since: float | None = None
    while True:
        try:
            item = server.events.get(timeout=0.05)
        except queue.Empty:
            item = None
        if isinstance(item, tuple):
            if item[0] == "published":
                published = int(item[1])
            elif item[0] == "error":
                raise RuntimeError(f"{server.name}: {item[1]}")
        elif isinstance(item, Event) and published is not None:
            if item.kind == "push":
                pushes[item.stream][item.type] += 1
                sent_bytes += item.size
            else:
                acks[item.stream][item.type] += 1
                last_ack[item.stream] = item.at_ns
                nacks += item.kind == "nack"
            settled_since = None
        done = (published is not None and len(pushes) >= envoys
                and all(CASE_TYPES[case] <= set(pushes[s]) for s in pushes)
                and all(acks[s][t] >= n for s in pushes for t, n in pushes[s].items()))
        if done and item is None:
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= quiet:
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.name} {case}: not every Envoy ACKed within {within}s")
    assert published is not None
    latencies = [(last_ack[s] - published) / 1e9 for s in pushes]
    return {"latencies": latencies, "bytes": sent_bytes, "cpu_seconds": server.cpu_seconds() - cpu_before,
            "nacks": nacks}


def _start_envoys(server: ServerProcess, name: str, mode: str, envoys: int, workdir: Path,
                  load_reports: bool = False) -> list[EnvoyProcess]:
    api_type = "DELTA_GRPC" if mode == "delta" else "GRPC"
    started = []
    for i in range(envoys):
        node = NodeIdentity(cluster="bench", namespace="bench", gateway="gw", instance=str(i))
        admin = free_port()
        target = XdsTarget("127.0.0.1", server.port, api_type, load_reports=load_reports)  # type: ignore[arg-type]
        started.append(EnvoyProcess(f"{name}-{mode}-{i}", render_bootstrap(node, admin, target), admin, workdir,
                                    log_level="error"))
    for envoy in started:
        envoy.wait_live(60)
    return started


def measure_lrs(envoys: int, seconds: float, files: dict[str, Path], changes: list[Path],
                workdir: Path, asked: int | None = None) -> dict[str, Any]:
    """The server's CPU and memory while ``envoys`` Envoys hold the full workload and get one endpoint change a
    second (``changes``, in turn: a controller's steady work), with and without each of them reporting every
    cluster's load every second (``asked``: the first that many clusters only, as mcgw asks for a gateway's
    ServiceImport clusters alone)."""
    out: dict[str, Any] = {"envoys": envoys, "seconds": seconds, "clusters_asked": asked or "all"}
    names = ",".join(_cluster_name(i) for i in range(asked or 0))
    for label, lrs in (("without", False), ("with", True)):
        argv = [sys.executable, "-m", "benchmarks._mcgw_bench_server", *(["--lrs"] if lrs else []),
                *(["--lrs-clusters", names] if lrs and names else [])]
        server = ServerProcess(f"mcgw-{label}-lrs", argv)
        started: list[EnvoyProcess] = []
        try:
            server.load(files["empty"])
            while server._control(30)[0] != "loaded":
                pass
            started = _start_envoys(server, server.name, "delta", envoys, workdir, load_reports=lrs)
            measure_case(server, files["full"], "full", envoys)
            time.sleep(3.0)  # every stream open and reporting
            cpu, reports = server.cpu_seconds(), _reports(server)
            deadline, k = time.monotonic() + seconds, 0
            while time.monotonic() < deadline:
                server.load(changes[k % len(changes)])
                k += 1
                time.sleep(1.0)
                while not server.events.empty():
                    server.events.get_nowait()
            figures = {"cpu_seconds": round(server.cpu_seconds() - cpu, 3), "peak_rss_mib": server.peak_rss_mib()}
            if lrs:
                count, clusters = (after - before for after, before in zip(_reports(server), reports, strict=True))
                figures |= {"reports_per_s": round(count / seconds, 1),
                            "clusters_per_report": round(clusters / count, 1) if count else 0}
            out[label] = figures
            print(f"  {label} LRS: cpu {figures['cpu_seconds']:.2f}s in {seconds:g}s, peak RSS "
                  f"{figures['peak_rss_mib']} MiB" + (f", {figures['reports_per_s']} reports/s of "
                                                       f"{figures['clusters_per_report']} clusters" if lrs else ""),
                  flush=True)
        finally:
            for envoy in started:
                envoy.stop()
            server.stop()
    base = out["without"]["cpu_seconds"]
    out["cpu_ratio"] = round(out["with"]["cpu_seconds"] / base, 3) if base else None
    out["cpu_added_per_s"] = round((out["with"]["cpu_seconds"] - base) / seconds, 4)
    out["peak_rss_ratio"] = round(out["with"]["peak_rss_mib"] / out["without"]["peak_rss_mib"], 3)
    return out


def _reports(server: ServerProcess) -> tuple[int, int]:
    assert server.popen.stdin is not None
    server.popen.stdin.write("reports\n")
    server.popen.stdin.flush()
    while True:
        kind, value = server._control(10)
        if kind == "reports":
            count, clusters = value.split()
            return int(count), int(clusters)


def run_server(name: str, argv: list[str], mode: str, envoys: int, files: dict[str, Path],
               change_files: list[tuple[str, Path]], workdir: Path) -> dict[str, Any]:
    server = ServerProcess(name, argv)
    started: list[EnvoyProcess] = []
    try:
        server.load(files["empty"])
        while server._control(30)[0] != "loaded":
            pass
        started = _start_envoys(server, name, mode, envoys, workdir)
        while not server.events.empty():  # drop the empty snapshot's events
            server.events.get_nowait()
        samples: dict[str, list[dict[str, Any]]] = {}
        try:
            samples["full"] = [measure_case(server, files["full"], "full", envoys)]
            for case, path in change_files:
                samples.setdefault(case, []).append(measure_case(server, path, case, envoys))
        except TimeoutError as error:
            # A server that never converges is a result too; later cases would measure nothing.
            print(f"  {error}", flush=True)
            return {"server": name, "mode": mode, "envoys": envoys, "failed": str(error), "cases": {},
                    "peak_rss_mib": server.peak_rss_mib()}
        cases = {}
        for case, runs in samples.items():
            latencies = [x for run in runs for x in run["latencies"]]
            cases[case] = {
                "repeats": len(runs),
                "ack_p50_s": round(_percentile(latencies, 0.5), 4),
                "ack_p99_s": round(_percentile(latencies, 0.99), 4),
                "all_acked_s": round(statistics.median(max(run["latencies"]) for run in runs), 4),
                "bytes_sent": int(statistics.mean(run["bytes"] for run in runs)),
                "cpu_seconds": round(statistics.mean(run["cpu_seconds"] for run in runs), 3),
                "nacks": sum(run["nacks"] for run in runs),
            }
        return {"server": name, "mode": mode, "envoys": envoys, "cases": cases, "peak_rss_mib": server.peak_rss_mib()}
    finally:
        for envoy in started:
            envoy.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoys", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each change case")
    parser.add_argument("--modes", nargs="+", default=["sotw", "delta"], choices=["sotw", "delta"])
    parser.add_argument("--lrs-only", action="store_true", help="measure only the cost of load reporting")
    parser.add_argument("--lrs-envoys", type=int, default=50)
    parser.add_argument("--lrs-seconds", type=float, default=20.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mcgw-xds-bench-"))
    listen_port = free_port()
    files = {"empty": write_records(workdir / "empty.bin", []),
             "full": write_records(workdir / "full.bin", workload(listen_port, 8080, "a"))}
    if args.lrs_only:
        print(f"load reporting: mcgw with {args.lrs_envoys} Envoys, an endpoint change a second, "
              f"{args.lrs_seconds:g}s ...", flush=True)
        changes = [write_records(workdir / f"lrs-endpoint-{port}.bin", workload(listen_port, port, "a"))
                   for port in (8081, 8080)]
        runs = []
        for asked in (None, 50):
            print(f" asking for {asked or 'every'} cluster(s) of each Envoy:", flush=True)
            lrs = measure_lrs(args.lrs_envoys, args.lrs_seconds, files, changes, workdir, asked)
            print(f" with LRS / without: cpu x{lrs['cpu_ratio']} (+{lrs['cpu_added_per_s']:.3f} cpu-s per s), "
                  f"peak RSS x{lrs['peak_rss_ratio']}", flush=True)
            runs.append(lrs)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "xds_push_lrs.json").write_text(json.dumps({
            "benchmark": "xds_push_lrs", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "workload": {"routes": ROUTES, "clusters": CLUSTERS,
                                               "endpoints": CLUSTERS * ENDPOINTS_PER_CLUSTER},
            "load_reporting": runs}, indent=2) + "\n")
        print(f"wrote {RESULTS / 'xds_push_lrs.json'}")
        return
    peer = build_peer()
    change_files, port, header = [], 8080, "a"
    for k in range(args.repeats):
        port = 8081 if port == 8080 else 8080
        endpoint_change = workload(listen_port, port, header)
        change_files.append(("endpoint", write_records(workdir / f"endpoint-{k}.bin", endpoint_change)))
        header = "b" if header == "a" else "a"
        change_files.append(("route", write_records(workdir / f"route-{k}.bin", workload(listen_port, port, header))))

    servers = {
        "mcgw": [sys.executable, "-m", "benchmarks._mcgw_bench_server"],
        "go-control-plane": [str(peer)],
    }
    runs = []
    for envoys in args.envoys:
        for mode in args.modes:
            for name, argv in servers.items():
                print(f"running {name} {mode} with {envoys} Envoys ...", flush=True)
                result = run_server(name, argv, mode, envoys, files, change_files, workdir)
                runs.append(result)
                for case, figures in result["cases"].items():
                    print(f"  {case:8} p50 {figures['ack_p50_s']:.3f}s p99 {figures['ack_p99_s']:.3f}s "
                          f"all {figures['all_acked_s']:.3f}s  {figures['bytes_sent'] / 1e6:8.2f} MB  "
                          f"cpu {figures['cpu_seconds']:.2f}s  nacks {figures['nacks']}", flush=True)
                print(f"  peak RSS {result['peak_rss_mib']} MiB", flush=True)

    ratios = []
    by_key = {(r["server"], r["mode"], r["envoys"]): r for r in runs}
    for (server, mode, envoys), run in by_key.items():
        if server != "mcgw":
            continue
        peer_run = by_key[("go-control-plane", mode, envoys)]
        for case, figures in run["cases"].items():
            if case not in peer_run["cases"]:
                ratios.append({"mode": mode, "envoys": envoys, "case": case,
                               "peer_failed": peer_run.get("failed", "no figures")})
                continue
            theirs = peer_run["cases"][case]
            ratios.append({
                "mode": mode, "envoys": envoys, "case": case,
                "all_acked": round(figures["all_acked_s"] / theirs["all_acked_s"], 3),
                "ack_p99": round(figures["ack_p99_s"] / theirs["ack_p99_s"], 3),
                "bytes": round(figures["bytes_sent"] / theirs["bytes_sent"], 3),
                "cpu": round(figures["cpu_seconds"] / theirs["cpu_seconds"], 3) if theirs["cpu_seconds"] else None,
            })
        if ratios and "peer_failed" not in ratios[-1]:
            ratios[-1]["peak_rss"] = round(run["peak_rss_mib"] / peer_run["peak_rss_mib"], 3)
    delta_vs_sotw = {}
    for envoys in args.envoys:
        sotw, delta = by_key.get(("mcgw", "sotw", envoys)), by_key.get(("mcgw", "delta", envoys))
        if sotw and delta and "endpoint" in sotw["cases"] and "endpoint" in delta["cases"]:
            delta_vs_sotw[str(envoys)] = round(
                delta["cases"]["endpoint"]["bytes_sent"] / sotw["cases"]["endpoint"]["bytes_sent"], 4)

    print("\nmcgw / go-control-plane (below 1.0: mcgw is faster or smaller)")
    for ratio in ratios:
        if "peer_failed" in ratio:
            print(f"  {ratio['mode']:5} {ratio['envoys']:3} Envoys {ratio['case']:8} "
                  f"peer failed: {ratio['peer_failed']}")
            continue
        print(f"  {ratio['mode']:5} {ratio['envoys']:3} Envoys {ratio['case']:8} all-ACK x{ratio['all_acked']:<6} "
              f"p99 x{ratio['ack_p99']:<6} bytes x{ratio['bytes']:<6} cpu x{ratio['cpu']}")
    print(f"mcgw delta / SotW bytes for one endpoint change: {delta_vs_sotw}")

    RESULTS.mkdir(exist_ok=True)
    report = {
        "benchmark": "xds_push", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "workload": {"routes": ROUTES, "clusters": CLUSTERS, "endpoints": CLUSTERS * ENDPOINTS_PER_CLUSTER,
                     "change_repeats": args.repeats},
        "runs": runs, "ratios_mcgw_over_peer": ratios, "delta_over_sotw_endpoint_bytes": delta_vs_sotw,
    }
    (RESULTS / "xds_push.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'xds_push.json'}")


if __name__ == "__main__":
    main()
