"""Does ``mcgw standalone`` keep answering while the file provider reads hostile or huge files?

Starts ``mcgw standalone --no-envoy`` on a copy of ``examples/quickstart`` and writes, one at a time,
a 50 MB file, an HTTPRoute with 1,000 rules x 64 matches, a small YAML anchor bomb and a 9 MB file of
millions of tiny nodes into a cluster directory, while another thread asks ``/healthz`` every 20 ms.
For each case it prints the worst and p99 ``/healthz`` latency and how long until ``fileErrors`` (or
the store) showed the file, and writes ``benchmarks/results/file_provider.json``.
Run: ``.venv/bin/python -m benchmarks.file_provider``.
Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._machine import machine

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart"
RESULTS = Path(__file__).resolve().parent / "results"
PROBE_INTERVAL = 0.02


def write_big_file(path: Path, size: int = 50 * 1024 * 1024) -> None:
    """A YAML file of ``size`` bytes: one ConfigMap-like object with a long comment block (written in chunks)."""
    line = b"# " + b"x" * 1021 + b"\n"
    with path.open("wb") as file:
        file.write(b"apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: shop}\n")
        written = file.tell()
        while written + len(line) <= size:
            file.write(line)
            written += len(line)
        file.write(b"#" * (size - written - 1) + b"\n")


def route_manifest(rules: int = 1000, matches: int = 64, gateway: str = "public") -> str:
    """An HTTPRoute with ``rules`` x ``matches`` path matches, attached to the quickstart's Gateway."""
    lines = ["apiVersion: gateway.networking.k8s.io/v1", "kind: HTTPRoute",
             "metadata: {name: huge, namespace: shop}", "spec:",
             f"  parentRefs: [{{name: {gateway}, namespace: infra}}]", "  rules:"]
    for rule in range(rules):
        lines.append("  - matches:")
        lines.extend(f"    - {{path: {{type: PathPrefix, value: /r{rule}/m{match}}}}}" for match in range(matches))
        lines.append("    backendRefs: [{name: store, port: 80}]")
    return "\n".join(lines) + "\n"


def anchor_bomb(levels: int = 9, width: int = 9) -> str:
    """A few hundred bytes that expand to ``width ** levels`` nodes (the "billion laughs")."""
    lines = ["apiVersion: v1", "kind: Service", "metadata: {name: bomb, namespace: shop}",
             "a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines.extend(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]"
                 for level in range(1, levels + 1))
    return "\n".join(lines) + "\n"


def dense_sequence(path: Path, size: int = 9 * 1024 * 1024) -> None:
    """Under the size limit, but millions of nodes: ``[a,a,a,…]``, about 2 GB if it were composed."""
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: dense, namespace: shop}\nx: ["
                    + "a," * (size // 2) + "a]\n")


@dataclass
class HealthzProbe:
    """Asks ``/healthz`` every 20 ms from its own thread; records each answer's latency and every failure."""

    url: str
    timeout: float = 30.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthzProbe:
        self._thread = threading.Thread(target=self._loop, name="healthz-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    response.read()
                    if response.status != 200:
                        self.failures.append(f"HTTP {response.status}")
            except OSError as error:
                self.failures.append(str(error))
            self.latencies.append(time.perf_counter() - started)
            self._stop.wait(PROBE_INTERVAL)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
        return {"probes": len(ordered), "failures": len(self.failures),
                "worst_ms": round(ordered[-1] * 1000, 1) if ordered else None, "p99_ms": round(p99 * 1000, 1)}


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    write: Callable[[Path], None]
    # What /api/status shows once the provider has dealt with the file.
    done: Callable[[dict[str, Any], Path], bool]


def _reported(status: dict[str, Any], path: Path) -> bool:
    return str(path) in status.get("fileErrors", {}).get("east", "")


def _route_loaded(status: dict[str, Any], _: Path) -> bool:
    return "shop/huge" in status["clusters"]["east"]["objects"].get("HTTPRoute", {})


CASES = (
    Case("50 MB file", "big.yaml", write_big_file, _reported),
    Case("HTTPRoute 1,000 rules x 64 matches", "huge-route.yaml", lambda p: p.write_text(route_manifest()),
         _route_loaded),
    Case("YAML anchor bomb", "bomb.yaml", lambda p: p.write_text(anchor_bomb()), _reported),
    Case("9 MB flow sequence of 4.7 million scalars", "dense.yaml", dense_sequence, _reported),
)


def fetch_status(admin: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{admin}/api/status", timeout=60) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def run_case(case: Case, directory: Path, admin: str, status: Callable[[], dict[str, Any]],
             within: float = 120.0, settle: float = 0.0) -> dict[str, Any]:
    """Write the case's file, wait until the server has dealt with it, remove it; the probe's figures.

    ``settle``: seconds to wait after removing the file, so that its deletion (after the provider's
    debounce) and the collection of its objects are not counted in the next case's figures.
    """
    path = directory / case.file
    with HealthzProbe(f"{admin}/healthz") as probe:
        time.sleep(0.2)
        started = time.monotonic()
        case.write(path)
        size = path.stat().st_size
        handled = None
        while time.monotonic() - started < within:
            if case.done(status(), path):
                handled = time.monotonic() - started
                break
            time.sleep(0.1)
        time.sleep(0.3)
    path.unlink()
    time.sleep(settle)
    return {"case": case.name, "bytes": size, "handled_after_s": None if handled is None else round(handled, 2),
            "file_errors": status().get("fileErrors", {}).get("east", ""), **probe.summary(),
            "failure_examples": probe.failures[:3]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def standalone_process(root: Path) -> Iterator[str]:
    """``mcgw standalone --no-envoy`` on ``root``; yields the admin URL once /readyz answers."""
    admin_port = _free_port()
    command = [sys.executable, "-m", "mcgw", "standalone", "-f", str(root), "--no-envoy",
               "--xds-listen", f"127.0.0.1:{_free_port()}", "--admin-listen", f"127.0.0.1:{admin_port}"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{admin}/readyz", timeout=1):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("mcgw standalone never became ready")
        yield admin
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mcgw-file-provider-") as tmp:
        root = Path(tmp) / "clusters"
        shutil.copytree(QUICKSTART, root)
        with standalone_process(root) as admin:
            for case in CASES:
                result = run_case(case, root / "east", admin, lambda: fetch_status(admin), settle=4.0)
                runs.append(result)
                print(f"{case.name}: /healthz worst {result['worst_ms']} ms, p99 {result['p99_ms']} ms over "
                      f"{result['probes']} probes ({result['failures']} failed); handled after "
                      f"{result['handled_after_s']} s")
    RESULTS.mkdir(exist_ok=True)
    report = {"benchmark": "file_provider", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "probe_interval_ms": PROBE_INTERVAL * 1000, "runs": runs}
    (RESULTS / "file_provider.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'file_provider.json'}")


if __name__ == "__main__":
    main()
