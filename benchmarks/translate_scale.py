"""Translation at scale: N HTTPRoutes (5 rules each, mixed matches and filters) across 3 clusters.

For each N, in a fresh process (so peak RSS is that of one size):

- full translation: ``translate_cluster`` from scratch plus the xDS snapshot of its output (semantics,
  IR, Envoy resources, serialisation), median per cluster;
- the first call of a ``ClusterTranslator`` (what the runtime pays once at start-up), same measure;
- one change through the incremental ``ClusterTranslator`` and its snapshot (``ClusterOutput.snapshot``
  with the previous snapshot), median over several changes of each kind: a route's match, a route's
  backend, and a Service's endpoints;
- peak RSS.

Python's garbage collector scans every live object in a full collection, and the three clusters' parsed
objects are several hundred thousand, so its pauses land on whichever translation triggers them. The
runtime pauses the collector during each translation pass (``mcgw.support.collector.paused``: a pass allocates
only what it returns, so collecting during it frees nothing). Every figure is taken twice: ``runtime``,
each timed pass run as the runtime runs it, with the collector paused; and ``gc_default``, the bare call
with the collector as it comes. Wall-clock figures are medians; ``full_translation_min_ms`` is the
fastest run, since other work on a shared machine only ever adds time. Run from the repository root
after ``make test``::

    .venv/bin/python -m benchmarks.translate_scale [--routes 10 100 1000 5000] [--repeats 5]

Prints the figures and writes ``benchmarks/results/translate_scale.json``.

The peer: when ``go`` is on the PATH (and unless ``--no-peer``), Envoy Gateway's own translator
(``peers/envoy-gateway``, built from the Go module proxy) translates the same workload for each size,
with its default cluster shape (one cluster per rule) and with ``mergeBackends`` (one per Service, as
mcgw), half of its passes just before mcgw's and half just after, so that both see the same machine.
Its like-for-like figure adds the serialisation of its output, which mcgw's full translation includes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from benchmarks._machine import machine
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.support import collector
from xdsserver import Snapshot

RESULTS = Path(__file__).resolve().parent / "results"
PEER = Path(__file__).resolve().parent / "peers" / "envoy-gateway"
CLUSTERS = ("east", "west", "central")
NAMESPACES = 10
GATEWAY = ("infra", "public")
ADDRESSES = {GATEWAY: ["198.18.0.1"]}
# The mixed workload: per 1,000 HTTPRoutes, 500 GRPCRoutes, 100 TLSRoutes and 100 TCPRoutes.
MIXED = {"GRPCRoute": 500, "TLSRoute": 100, "TCPRoute": 100}
TCP_LISTENERS_PER_GATEWAY = 50  # within the CRD's 64 listeners per Gateway


def _route(i: int, variant: str = "a", path: str = "api", service: int | None = None) -> dict[str, Any]:
    ns = f"team-{i % NAMESPACES}"
    target = i % 50 if service is None else service
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/svc-{i}/{path}"}}],
         "backendRefs": [{"name": f"svc-{target}", "port": 80, "weight": 90},
                         {"name": f"svc-{(target + 1) % 50}", "port": 80, "weight": 10}]},
        {"matches": [{"path": {"type": "Exact", "value": f"/svc-{i}/health"}, "method": "GET"}],
         "filters": [{"type": "ResponseHeaderModifier",
                      "responseHeaderModifier": {"set": [{"name": "x-variant", "value": variant}]}}],
         "backendRefs": [{"name": f"svc-{i % 50}", "port": 80}]},
        {"matches": [{"path": {"type": "RegularExpression", "value": f"^/svc-{i}/v[0-9]+/items$"},
                      "headers": [{"name": "x-tenant", "value": "blue"}]}],
         "backendRefs": [{"name": f"svc-{i % 50}", "port": 80}], "timeouts": {"request": "10s"}},
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/svc-{i}/old"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301, "path": {
             "type": "ReplacePrefixMatch", "replacePrefixMatch": f"/svc-{i}/new"}}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/svc-{i}/rewrite"},
                      "queryParams": [{"name": "v", "value": "2"}]}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                     "replacePrefixMatch": "/"}}},
                     {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-r",
                                                                                          "value": "1"}]}}],
         "backendRefs": [{"name": f"svc-{i % 50}", "port": 80}], "retry": {"codes": [503], "attempts": 2}},
    ]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"route-{i}", "namespace": ns, "generation": 1,
                         "creationTimestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"},
            "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                     "hostnames": [f"app-{i % 20}.example.com"], "rules": rules}}


def _slice(ns: int, s: int, cluster_index: int, endpoints: int = 3) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{s}-1", "namespace": f"team-{ns}",
                         "labels": {"kubernetes.io/service-name": f"svc-{s}"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [f"198.18.{cluster_index}.{e + 1}"]} for e in range(endpoints)]}


def _metadata(name: str, i: int) -> dict[str, Any]:
    return {"name": name, "namespace": f"team-{i % NAMESPACES}", "generation": 1,
            "creationTimestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"}


def _grpc_route(i: int) -> dict[str, Any]:
    """Three rules: an exact method, a service with a header match, a regular expression over methods."""
    backend = [{"name": f"svc-{i % 50}", "port": 80}]
    rules = [
        {"matches": [{"method": {"service": f"shop.v{i}.Cart", "method": "Get"}}], "backendRefs": backend},
        {"matches": [{"method": {"service": f"shop.v{i}.Cart"}, "headers": [{"name": "x-tenant", "value": "blue"}]}],
         "backendRefs": [{"name": f"svc-{(i + 1) % 50}", "port": 80, "weight": 80},
                         {"name": f"svc-{(i + 2) % 50}", "port": 80, "weight": 20}]},
        {"matches": [{"method": {"type": "RegularExpression", "service": f"shop\\.v{i}\\.Order[a-z]*",
                                 "method": "List.*"}}],
         "filters": [{"type": "RequestHeaderModifier",
                      "requestHeaderModifier": {"set": [{"name": "x-route", "value": str(i)}]}}],
         "backendRefs": backend},
    ]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": _metadata(f"grpc-{i}", i),
            "spec": {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "http"}],
                     "hostnames": [f"grpc-{i % 20}.example.com"], "rules": rules}}


def _tls_route(i: int) -> dict[str, Any]:
    """Passthrough by SNI, one exact and one wildcard hostname each, weighted across two Services."""
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute", "metadata": _metadata(f"tls-{i}", i),
            "spec": {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "tls"}],
                     "hostnames": [f"db-{i}.example.com", f"*.tenant-{i}.example.com"],
                     "rules": [{"backendRefs": [{"name": f"svc-{i % 50}", "port": 80, "weight": 3},
                                                {"name": f"svc-{(i + 1) % 50}", "port": 80, "weight": 1}]}]}}


def _tcp_route(i: int) -> dict[str, Any]:
    """One TCP listener each (a listener forwards to one route), on the TCP Gateways."""
    gateway, listener = divmod(i, TCP_LISTENERS_PER_GATEWAY)
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TCPRoute", "metadata": _metadata(f"tcp-{i}", i),
            "spec": {"parentRefs": [{"name": f"tcp-{gateway}", "namespace": "infra", "sectionName": f"tcp-{listener}"}],
                     "rules": [{"backendRefs": [{"name": f"svc-{i % 50}", "port": 80}]}]}}


def workload_documents(routes: int, mixed: bool, class_name: str = "mcgw") -> list[dict[str, Any]]:
    """The workload's Gateways, Services, EndpointSlices (cluster 0) and routes, without its GatewayClass:
    ``routes`` HTTPRoutes, and with ``mixed`` the other kinds in the proportions of MIXED (per 1,000)."""
    everyone = {"namespaces": {"from": "All"}}
    listeners: list[dict[str, Any]] = [{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": everyone}]
    counts = {kind: routes * share // 1000 for kind, share in MIXED.items()} if mixed else {}
    if counts.get("TLSRoute"):
        listeners.append({"name": "tls", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"},
                          "allowedRoutes": everyone})
    documents: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "public", "namespace": "infra"},
         "spec": {"gatewayClassName": class_name, "listeners": listeners}}]
    tcp = counts.get("TCPRoute", 0)
    for gateway in range(-(-tcp // TCP_LISTENERS_PER_GATEWAY)):
        ports = range(min(TCP_LISTENERS_PER_GATEWAY, tcp - gateway * TCP_LISTENERS_PER_GATEWAY))
        documents.append(
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
             "metadata": {"name": f"tcp-{gateway}", "namespace": "infra"},
             "spec": {"gatewayClassName": class_name, "listeners": [
                 {"name": f"tcp-{k}", "port": 10000 + k, "protocol": "TCP", "allowedRoutes": everyone}
                 for k in ports]}})
    for ns in range(NAMESPACES):
        for s in range(50):
            documents.append({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": f"svc-{s}", "namespace": f"team-{ns}"},
                              "spec": {"ports": [{"name": "http", "port": 80}]}})
            documents.append(_slice(ns, s, 0))
    documents += [_route(i) for i in range(routes)]
    documents += [_grpc_route(i) for i in range(counts.get("GRPCRoute", 0))]
    documents += [_tls_route(i) for i in range(counts.get("TLSRoute", 0))]
    documents += [_tcp_route(i) for i in range(tcp)]
    return documents


def gateways(routes: int, mixed: bool) -> list[tuple[str, str]]:
    """(namespace, name) of every Gateway of the workload."""
    tcp = routes * MIXED["TCPRoute"] // 1000 if mixed else 0
    return [GATEWAY, *((("infra", f"tcp-{g}")) for g in range(-(-tcp // TCP_LISTENERS_PER_GATEWAY)))]


def cluster_objects(routes: int, cluster_index: int, mixed: bool = False) -> list[AnyObject]:
    """One cluster's objects, sorted by (kind, namespace, name) as the store hands them over."""
    documents: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}}]
    for doc in workload_documents(routes, mixed):
        if doc["kind"] == "EndpointSlice":
            name = doc["metadata"]["labels"]["kubernetes.io/service-name"]
            doc = _slice(int(doc["metadata"]["namespace"].removeprefix("team-")), int(name.removeprefix("svc-")),
                         cluster_index)
        documents.append(doc)
    return sorted((parse_object(doc, "benchmark") for doc in documents), key=lambda o: o.key)


def addresses(names: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    return {name: [f"198.18.0.{k + 1}"] for k, name in enumerate(names)}


def _full(cluster: str, objects: list[AnyObject], names: list[tuple[str, str]]) -> tuple[ClusterOutput, list[Snapshot]]:
    """The output is returned, not dropped: freeing it is the cost of replacing it, paid by the runtime when
    the next output takes its place, not by the translation that made it."""
    output = translate_cluster(cluster, objects, addresses(names))
    return output, [output.snapshot(name) for name in names]


def _changes(routes: int, objects: list[AnyObject], k: int) -> tuple[str, AnyObject]:
    """The k-th change: a route's match, a route's backend, or a Service's endpoints, in turn."""
    i = (k * 7919) % routes
    kind = ("route match", "route backend", "endpoints")[k % 3]
    if kind == "route match":
        return kind, parse_object(_route(i, path=f"api-v{k}"), "benchmark")
    if kind == "route backend":
        return kind, parse_object(_route(i, service=(i + 1 + k) % 50), "benchmark")
    return kind, parse_object(_slice(i % NAMESPACES, i % 50, 0, endpoints=2 + k % 3), "benchmark")


def _ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 2)


def _measure(per_cluster: dict[str, list[AnyObject]], routes: int, repeats: int,
             around: Callable[[], AbstractContextManager[None]], names: list[tuple[str, str]]) -> dict[str, Any]:
    """``around`` wraps each timed pass: the runtime's collector pause, or nothing."""
    where = addresses(names)
    full: list[float] = []
    full_cpu: list[float] = []
    for _ in range(repeats):
        for name, objects in per_cluster.items():
            with around():
                started, started_cpu = time.perf_counter(), time.process_time()
                made = _full(name, objects, names)
                full.append(time.perf_counter() - started)
                full_cpu.append(time.process_time() - started_cpu)
            del made
    first: list[float] = []
    translators: dict[str, tuple[ClusterTranslator, ClusterOutput, list[Snapshot]]] = {}
    for name, objects in per_cluster.items():
        with around():
            started = time.perf_counter()
            translator = ClusterTranslator(name)
            output = translator.translate(tuple(objects), where)
            snapshots = [output.snapshot(gateway) for gateway in names]
            first.append(time.perf_counter() - started)
        translators[name] = (translator, output, snapshots)
    translator, output, snapshots = translators["east"]
    objects = list(per_cluster["east"])
    index = {obj.key: i for i, obj in enumerate(objects)}
    by_kind: dict[str, list[tuple[float, float]]] = {}
    route_cpu: list[float] = []
    for k in range(max(6 * repeats, 18)):
        kind, changed = _changes(routes, objects, k)
        objects[index[changed.key]] = changed
        with around():
            started, started_cpu = time.perf_counter(), time.process_time()
            output = translator.translate(tuple(objects), where)
            translated = time.perf_counter()
            snapshots = [output.snapshot(gateway, before) for gateway, before in zip(names, snapshots, strict=True)]
            finished, finished_cpu = time.perf_counter(), time.process_time()
        by_kind.setdefault(kind, []).append((translated - started, finished - started))
        if kind != "endpoints":
            route_cpu.append(finished_cpu - started_cpu)
    from_scratch = translate_cluster("east", objects, where)
    if [from_scratch.snapshot(gateway).versions for gateway in names] != [snapshot.versions for snapshot in snapshots]:
        raise AssertionError("incremental translation differs from a full translation")
    route_changes = by_kind["route match"] + by_kind["route backend"]
    return {
        "full_translation_ms": _ms(full),
        "full_translation_min_ms": round(min(full) * 1000, 2),
        "full_translation_runs_ms": [round(t * 1000, 1) for t in full],
        "full_translation_cpu_ms": _ms(full_cpu),
        "first_translator_call_ms": _ms(first),
        "one_route_change_ms": _ms([t for _, t in route_changes]),
        "one_route_change_cpu_ms": _ms(route_cpu),
        "one_route_change_translate_only_ms": _ms([t for t, _ in route_changes]),
        "one_route_change_max_ms": round(max(t for _, t in route_changes) * 1000, 2),
        "one_change_by_kind_ms": {kind: _ms([t for _, t in times]) for kind, times in by_kind.items()},
        "envoy_resources_per_cluster": sum(len(r) for snapshot in snapshots for r in snapshot.resources.values()),
    }


def measure(routes: int, repeats: int, mixed: bool = False) -> dict[str, Any]:
    """One size, in this process: as the runtime runs a pass (collector paused), then the bare call."""
    per_cluster = {name: cluster_objects(routes, i, mixed) for i, name in enumerate(CLUSTERS)}
    names = gateways(routes, mixed)
    gc.collect()
    paused = _measure(per_cluster, routes, repeats, collector.paused, names)
    gc.collect()
    default = _measure(per_cluster, routes, repeats, nullcontext, names)
    kinds = {kind: sum(1 for obj in per_cluster["east"] if type(obj).__name__ == kind)
             for kind in ("HTTPRoute", *MIXED)}
    return {"routes": routes, "workload": "mixed" if mixed else "http", "route_kinds": kinds,
            "gateways": len(names), "rules_per_route": 5, "clusters": len(CLUSTERS),
            "envoy_resources_per_cluster": paused.pop("envoy_resources_per_cluster"),
            "runtime": paused,
            "gc_default": {k: v for k, v in default.items() if k != "envoy_resources_per_cluster"},
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _in_child(routes: int, repeats: int, mixed: bool) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.translate_scale", "--child", str(routes),
                           "--repeats", str(repeats), *(["--mixed"] if mixed else [])],
                          check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _size(run: dict[str, Any]) -> str:
    if run.get("workload") != "mixed":
        return f"{run['routes']:5} routes"
    return " + ".join(f"{count} {kind}s" for kind, count in run["route_kinds"].items())


def _line(run: dict[str, Any], mode: str) -> str:
    figures = run[mode]
    return (f"{_size(run)}, {mode:10}: "
            f"full {figures['full_translation_ms']:8.1f} ms (CPU {figures['full_translation_cpu_ms']:.1f}, fastest "
            f"{figures['full_translation_min_ms']:.1f}), "
            f"first translator call {figures['first_translator_call_ms']:8.1f} ms, one route change "
            f"{figures['one_route_change_ms']:6.2f} ms (translation alone "
            f"{figures['one_route_change_translate_only_ms']:.2f}), one endpoint change "
            f"{figures['one_change_by_kind_ms']['endpoints']:6.2f} ms")


def _peer_binary() -> Path | None:
    """Envoy Gateway's harness, built once into a cache outside the repository; None without Go."""
    if shutil.which("go") is None:
        return None
    built = subprocess.run([str(PEER / "build.sh")], capture_output=True, text=True)
    if built.returncode != 0:  # e.g. the module proxy unreachable: measure mcgw alone, and say why
        print(f"Envoy Gateway's harness did not build, so it is not measured:\n{built.stderr[-2000:]}", flush=True)
        return None
    return Path(built.stdout.strip())


def _peer_passes(harness: Path, workload: Path, passes: int, merge: bool) -> dict[str, Any]:
    argv = [str(harness), "-f", str(workload), "-n", str(passes)] + (["-merge-backends"] if merge else [])
    result: dict[str, Any] = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    return result


class _Peer:
    """Envoy Gateway's translator on one size's workload, in two halves around mcgw's measurement."""

    def __init__(self, harness: Path, routes: int, passes: int, workdir: Path, mixed: bool) -> None:
        self.harness, self.passes = harness, passes
        self.workload = workdir / f"envoy-gateway-{routes}{'-mixed' if mixed else ''}.yaml"
        subprocess.run([sys.executable, str(PEER / "workload.py"), "--routes", str(routes), "-o", str(self.workload),
                        *(["--mixed"] if mixed else [])], check=True, capture_output=True)
        self.runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}

    def half(self) -> None:
        for merge in (False, True):
            self.runs[merge].append(_peer_passes(self.harness, self.workload, max(1, self.passes // 2), merge))

    def summary(self, mcgw_ms: float) -> dict[str, Any]:
        out: dict[str, Any] = {"peer": "envoy-gateway"}
        for merge, runs in self.runs.items():
            translate = statistics.median(t for run in runs for t in run["iterations_ms"])
            marshal = statistics.median(run["marshal_median_ms"] for run in runs)
            last = runs[-1]
            out["version"] = last["version"]
            out["merge_backends" if merge else "defaults"] = {
                "translation_median_ms": round(translate, 1),
                "translation_min_ms": round(min(run["min_ms"] for run in runs), 1),
                "serialisation_median_ms": round(marshal, 1),
                "envoy_clusters": last["xds_clusters"], "envoy_routes": last["xds_routes"],
                "routes_accepted": last["routes_accepted"],
                "mcgw_ratio": round(mcgw_ms / (translate + marshal), 3),
            }
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mixed", action="store_true",
                        help="the mixed workload: per 1,000 HTTPRoutes also 500 GRPCRoutes, 100 TLSRoutes and "
                             "100 TCPRoutes (default size 1000); results in translate_scale_mixed.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-peer", action="store_true", help="skip Envoy Gateway's translator")
    parser.add_argument("--peer-passes", type=int, default=10)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.repeats, args.mixed)))
        return
    sizes = [1000] if args.mixed and args.routes == parser.get_default("routes") else args.routes
    harness = None if args.no_peer else _peer_binary()
    if harness is None and not args.no_peer and shutil.which("go") is None:
        print("no Go toolchain: Envoy Gateway's translator is not measured", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for routes in sizes:
            peer = _Peer(harness, routes, args.peer_passes, Path(workdir), args.mixed) if harness else None
            load_before = os.getloadavg()[0]
            if peer:
                peer.half()
            run = _in_child(routes, args.repeats, args.mixed)
            if peer:
                peer.half()
                run["peer"] = peer.summary(run["runtime"]["full_translation_ms"])
            run["load_average_1m"] = round(max(load_before, os.getloadavg()[0]), 2)
            runs.append(run)
            for mode in ("runtime", "gc_default"):
                print(_line(run, mode), flush=True)
            print(f"{_size(run)}: peak RSS {run['peak_rss_mib']} MiB, {run['envoy_resources_per_cluster']} "
                  f"Envoy resources per cluster, load average {run['load_average_1m']}", flush=True)
            if "peer" in run:
                for shape in ("defaults", "merge_backends"):
                    figures = run["peer"][shape]
                    print(f"{_size(run)}: Envoy Gateway {run['peer']['version']} ({shape}, "
                          f"{figures['envoy_clusters']} clusters): translation {figures['translation_median_ms']} ms "
                          f"+ serialisation {figures['serialisation_median_ms']} ms; mcgw / Envoy Gateway = "
                          f"{figures['mcgw_ratio']}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    report = {"benchmark": "translate_scale", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "runs": runs,
              "note": "full = translate_cluster + xDS snapshot (semantics, IR, Envoy resources, serialisation), "
                      "median per cluster; one change = ClusterTranslator.translate + ClusterOutput.snapshot with "
                      "the previous snapshot; one_route_change = median over changes to a route's match and to a "
                      "route's backend; endpoints = an EndpointSlice change; runtime = each pass with the garbage "
                      "collector paused, as mcgw's runtime runs it; gc_default = the bare call; each size in its own "
                      "process; peer = Envoy Gateway's gatewayapi + xDS translation of the same workload in the "
                      "same run (peers/envoy-gateway), its mcgw_ratio = mcgw's runtime full-translation median / "
                      "(its translation median + its serialisation median); *_cpu_ms = process CPU time, less "
                      "disturbed than wall time when other work shares the machine (load_average_1m)"}
    written = RESULTS / ("translate_scale_mixed.json" if args.mixed else "translate_scale.json")
    written.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
