"""Translation at scale: N HTTPRoutes (5 rules each, mixed matches and filters) across 3 clusters.

Measures the full translation (semantics + IR + Envoy resources + snapshot serialisation) per
cluster, the time to re-translate after one route changes, and peak RSS. Run from the repository
root after ``make test``::

    .venv/bin/python -m benchmarks.translate_scale [--routes 10 100 1000 5000]

Prints the figures and writes ``benchmarks/results/translate_scale.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._machine import machine
from mcgw.model import AnyObject, parse_object
from mcgw.pipeline import translate_cluster
from xdsserver import Snapshot

RESULTS = Path(__file__).resolve().parent / "results"
CLUSTERS = ("east", "west", "central")
NAMESPACES = 10


def _route(i: int, variant: str = "a") -> dict[str, Any]:
    ns = f"team-{i % NAMESPACES}"
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/svc-{i}/api"}}],
         "backendRefs": [{"name": f"svc-{i % 50}", "port": 80, "weight": 90},
                         {"name": f"svc-{(i + 1) % 50}", "port": 80, "weight": 10}]},
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


def cluster_objects(routes: int, cluster_index: int) -> list[AnyObject]:
    documents: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "public", "namespace": "infra"},
         "spec": {"gatewayClassName": "mcgw", "listeners": [
             {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]
    for ns in range(NAMESPACES):
        for s in range(50):
            documents.append({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": f"svc-{s}", "namespace": f"team-{ns}"},
                              "spec": {"ports": [{"name": "http", "port": 80}]}})
            documents.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                              "metadata": {"name": f"svc-{s}-1", "namespace": f"team-{ns}",
                                           "labels": {"kubernetes.io/service-name": f"svc-{s}"}},
                              "ports": [{"name": "http", "port": 8080}],
                              "endpoints": [{"addresses": [f"198.18.{cluster_index}.{e + 1}"]} for e in range(3)]})
    documents += [_route(i) for i in range(routes)]
    return [parse_object(doc, "benchmark") for doc in documents]


def _translate(cluster: str, objects: list[AnyObject], previous: Snapshot | None) -> Snapshot:
    result = translate_cluster(cluster, objects, {("infra", "public"): ["198.18.0.1"]})
    (messages,) = result.resources.values()
    return Snapshot.from_messages(messages, previous=previous)


def measure(routes: int, repeats: int) -> dict[str, Any]:
    per_cluster = {name: cluster_objects(routes, i) for i, name in enumerate(CLUSTERS)}
    full_times = []
    snapshots: dict[str, Snapshot] = {}
    for _ in range(repeats):
        started = time.perf_counter()
        for name, objects in per_cluster.items():
            snapshots[name] = _translate(name, objects, None)
        full_times.append((time.perf_counter() - started) / len(CLUSTERS))
    change_times = []
    for k in range(repeats):
        objects = list(per_cluster["east"])
        changed = routes // 2
        objects[-routes + changed] = parse_object(_route(changed, variant=f"b{k}"), "benchmark")
        started = time.perf_counter()
        snapshots["east"] = _translate("east", objects, snapshots["east"])
        change_times.append(time.perf_counter() - started)
    gc.collect()
    resources = sum(len(r) for r in snapshots["east"].resources.values())
    return {
        "routes": routes, "rules_per_route": 5, "clusters": len(CLUSTERS), "envoy_resources_per_cluster": resources,
        "full_translation_ms": round(statistics.median(full_times) * 1000, 1),
        "one_route_change_ms": round(statistics.median(change_times) * 1000, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for routes in args.routes:
        result = measure(routes, args.repeats)
        runs.append(result)
        print(f"{routes:5} routes: full translation {result['full_translation_ms']:8.1f} ms per cluster, "
              f"one route change {result['one_route_change_ms']:8.1f} ms, peak RSS {result['peak_rss_mib']} MiB "
              f"({result['envoy_resources_per_cluster']} Envoy resources)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    report = {"benchmark": "translate_scale", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "runs": runs,
              "note": "full = semantics + IR + Envoy resources + snapshot build, median per cluster; "
                      "the change re-runs the same pipeline (no incremental translation yet)"}
    (RESULTS / "translate_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'translate_scale.json'}")


if __name__ == "__main__":
    main()
