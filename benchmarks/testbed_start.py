"""How long the real test bed takes to start, and what it costs in memory, per cluster count.

Run as root: ``.venv/bin/python -m benchmarks.testbed_start [--sizes 1 3]``. Prints the figures and
writes ``benchmarks/results/testbed_start.json``. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from benchmarks._machine import machine
from tests.e2e.testbed import ensure_artifacts, start_clusterset

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return round(kib / 1024, 1)


def measure(size: int) -> dict[str, Any]:
    artifacts = ensure_artifacts()
    started = time.monotonic()
    with start_clusterset(size=size, artifacts=artifacts) as clusterset:
        up = time.monotonic() - started
        rss = {p.name: _rss_mib(p.pid) for c in clusterset.clusters.values() for p in c.processes}
        per_cluster = {name: round(c.start_seconds, 2) for name, c in clusterset.clusters.items()}
    return {
        "clusters": size,
        "start_seconds": round(up, 2),
        "teardown_seconds": round(time.monotonic() - started - up, 2),
        "per_cluster_start_seconds": per_cluster,
        "rss_mib": rss,
        "rss_total_mib": round(sum(rss.values()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    runs = []
    for size in args.sizes:
        result = measure(size)
        runs.append(result)
        print(f"{size} cluster(s): up in {result['start_seconds']}s, torn down in {result['teardown_seconds']}s, "
              f"etcd+apiserver RSS {result['rss_total_mib']} MiB")
    RESULTS.mkdir(exist_ok=True)
    report = {"benchmark": "testbed_start", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "runs": runs}
    (RESULTS / "testbed_start.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'testbed_start.json'}")


if __name__ == "__main__":
    main()
