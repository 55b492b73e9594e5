"""``mcgw demo`` (what ``make demo`` runs): ``mcgw standalone`` on ``examples/quickstart``.

Three member clusters, each with its own real Envoy gateway on a loopback address and sample
backends on other loopback addresses. The demo starts a backend for every loopback endpoint in the
manifests, starts standalone mode, sends the example requests itself, prints what came back next to
what the route says should, and then prints the same requests for you to try. Ctrl-C stops it all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from mcgw.app.echo import make_app
from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.objects.model import EndpointSlice
from mcgw.providers.files.manifests import read_clusterset_dir

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SPLIT_SAMPLES = 50


@dataclass(frozen=True)
class Backend:
    cluster: str
    namespace: str
    pod: str
    address: str
    port: int


@dataclass(frozen=True)
class Answer:
    status: int
    cluster: str
    pod: str
    served_by: str


@dataclass(frozen=True)
class Check:
    """One example request, what the route promises, and what came back."""

    description: str
    curl: str
    expected: str
    observed: str
    ok: bool
    steady: bool = True  # holds while nothing is broken, so it is worth trying by hand afterwards


def demo_backends(root: Path) -> list[Backend]:
    """A sample backend for every loopback address:port in the manifests' EndpointSlices."""
    _, objects = read_clusterset_dir(root)
    backends = []
    for cluster, items in objects.items():
        for item in items:
            if not isinstance(item, EndpointSlice):
                continue
            service = item.service_name or item.metadata.name
            for port in (p.port for p in item.ports if p.port):
                for index, endpoint in enumerate(item.endpoints):
                    for address in endpoint.addresses:
                        if ipaddress.ip_address(address).is_loopback:
                            backends.append(Backend(cluster, item.metadata.namespace, f"{service}-{index}",
                                                    address, port))
    return backends


def _request(url: str, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.loads(response.read())
            return Answer(response.status, str(body.get("cluster")), str(body.get("pod")),
                          response.headers.get("x-served-by", ""))
    except urllib.error.HTTPError as error:
        return Answer(error.code, "", "", "")


def _service(pod: str) -> str:
    return pod.rsplit("-", 1)[0]


async def example_checks(gateways: dict[str, str]) -> list[Check]:
    """Send the quickstart's example requests to every cluster's gateway (``cluster -> address``)."""
    checks = []
    for cluster, address in gateways.items():
        base = f"http://{address}:8080"
        v2 = await asyncio.to_thread(_request, f"{base}/store", {"x-version": "v2"})
        checks.append(Check(
            f"{cluster}: the x-version header picks v2", f"curl -s -H 'x-version: v2' {base}/store",
            f"200 from cluster {cluster}, service store-v2, header x-served-by: store-v2",
            f"{v2.status} from cluster {v2.cluster}, service {_service(v2.pod)}, x-served-by: {v2.served_by}",
            (v2.status, v2.cluster, _service(v2.pod), v2.served_by) == (200, cluster, "store-v2", "store-v2")))
        split: collections.Counter[str] = collections.Counter()
        clusters = set()
        for _ in range(SPLIT_SAMPLES):
            answer = await asyncio.to_thread(_request, f"{base}/store")
            split[_service(answer.pod) if answer.status == 200 else str(answer.status)] += 1
            clusters.add(answer.cluster)
        share = split["store"] / SPLIT_SAMPLES
        checks.append(Check(
            f"{cluster}: everyone else gets the 80/20 canary split", f"curl -s {base}/store",
            f"cluster {cluster}; about 80 % store and 20 % store-v2 over {SPLIT_SAMPLES} requests",
            f"cluster {', '.join(sorted(clusters))}; " + ", ".join(f"{k} {v}" for k, v in sorted(split.items())),
            clusters == {cluster} and set(split) <= {"store", "store-v2"} and 0.5 <= share <= 0.98))
        missing = await asyncio.to_thread(_request, f"{base}/nothing-here")
        checks.append(Check(
            f"{cluster}: a path no route matches", f"curl -si {base}/nothing-here",
            "404", str(missing.status), missing.status == 404))
    return checks


FAILOVER_SAMPLES = 40


async def _serve(backend: Backend) -> web.AppRunner:
    runner = web.AppRunner(make_app(backend.cluster, backend.namespace, backend.pod), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, backend.address, backend.port).start()
    return runner


async def _answers(url: str, count: int) -> collections.Counter[str]:
    """Which cluster answered each of ``count`` requests (a failed request counts under its status)."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        answer = await asyncio.to_thread(_request, url)
        seen[answer.cluster if answer.status == 200 else f"HTTP {answer.status}"] += 1
    return seen


async def failover_checks(gateway: str, local: str, next_cluster: str, runners: list[web.AppRunner],
                          backends: list[Backend]) -> tuple[list[Check], list[web.AppRunner]]:
    """Stop ``local``'s store backends, show that the ServiceImport route answers from the next cluster without
    a failed request, then start them again and show traffic come back."""
    url = f"http://{gateway}:8080/failover"
    before = await _answers(url, 10)
    checks = [Check(f"{local}: /failover is served locally while {local}'s store is up", f"curl -s {url}",
                    f"200 from cluster {local}", ", ".join(f"{k} {v}" for k, v in sorted(before.items())),
                    set(before) == {local})]
    for runner in runners:
        await runner.cleanup()
    during = await _answers(url, FAILOVER_SAMPLES)
    checks.append(Check(
        f"{local}'s store backends stopped: the next priority answers, no request fails",
        f"curl -s {url}", f"200 from cluster {next_cluster} (east's failoverOrder), 0 failed",
        ", ".join(f"{k} {v}" for k, v in sorted(during.items())), set(during) == {next_cluster}, steady=False))
    restarted = [await _serve(backend) for backend in backends]
    deadline = asyncio.get_running_loop().time() + 30
    after: collections.Counter[str] = collections.Counter()
    while asyncio.get_running_loop().time() < deadline:
        after = await _answers(url, 5)
        if set(after) == {local}:
            break
        await asyncio.sleep(0.5)
    checks.append(Check(f"{local}'s store is back: traffic returns to it", f"curl -s {url}",
                        f"200 from cluster {local}", ", ".join(f"{k} {v}" for k, v in sorted(after.items())),
                        set(after) == {local}))
    return checks, restarted


async def run_demo(root: Path = QUICKSTART, xds_listen: str = "127.0.0.1:0", admin_listen: str = "127.0.0.1:19000",
                   once: bool = False, say: Callable[[str], None] | None = None) -> list[Check]:
    tell = say or (lambda message: print(message, flush=True))
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(tell, "stopped every Envoy, the backends, the xDS and admin servers")
        backends = demo_backends(root)
        runners: dict[Backend, web.AppRunner] = {}
        for backend in backends:
            runners[backend] = await _serve(backend)

        async def stop_backends() -> None:
            for runner in runners.values():
                await runner.cleanup()

        cleanup.push_async_callback(stop_backends)
        tell(f"1. {len(backends)} sample backends on loopback, from the EndpointSlices in {root}")

        standalone = await cleanup.enter_async_context(Standalone(StandaloneOptions(
            root, xds_listen=xds_listen, admin_listen=admin_listen)))
        tell(f"2. mcgw standalone: xDS on 127.0.0.1:{standalone.xds_port}, "
             f"admin on http://127.0.0.1:{standalone.admin_port}")
        await standalone.guard(standalone.wait_ready())
        assert standalone.fleet is not None
        gateways = {}
        for (cluster, (namespace, name)), envoy in sorted(standalone.fleet.envoys.items()):
            gateways[cluster] = envoy.address
            tell(f"3. cluster {cluster}: Envoy for Gateway {namespace}/{name} is LIVE on {envoy.address}:8080 "
                 f"(Envoy admin 127.0.0.1:{envoy.process.admin_port})")
        _check_gateway_addresses(standalone, gateways)
        checks = await example_checks(gateways)
        tell("4. example requests (sent by the demo just now):")
        _report(tell, checks)
        if "east" in gateways and root == QUICKSTART:
            local = [b for b in backends if b.cluster == "east" and b.pod.startswith("store-") and
                     not b.pod.startswith("store-v2")]
            stopped = [runners.pop(b) for b in local]
            failover, restarted = await failover_checks(gateways["east"], "east", "central", stopped, local)
            runners.update(zip(local, restarted, strict=True))
            tell("5. failover through the ServiceImport (east prefers central, then west):")
            _report(tell, failover)
            checks += failover
        if not once:
            tell("\nTry them yourself (each gateway answers on its own loopback address):")
            for curl, expected in dict.fromkeys((c.curl, c.expected) for c in checks if c.steady):
                tell(f"  {curl}    # {expected}")
            tell(f"  curl -s http://127.0.0.1:{standalone.admin_port}/api/status    "
                 "# every object's computed status, and the connected Envoys with their ACK/NACK state")
            tell(f"Edit the files under {root} and the change is applied within a second. Ctrl-C stops it all.")
            await standalone.serve()
    return checks


def _report(tell: Callable[[str], None], checks: list[Check]) -> None:
    for check in checks:
        tell(f"   [{'ok' if check.ok else 'UNEXPECTED'}] {check.description}\n"
             f"        {check.curl}\n        expected: {check.expected}\n        observed: {check.observed}")


def _check_gateway_addresses(standalone: Standalone, gateways: dict[str, str]) -> None:
    """The address each Envoy listens on is the one in the Gateway's computed status."""
    assert standalone.reconciler is not None
    for cluster, address in gateways.items():
        statuses = standalone.reconciler.outputs[cluster].statuses()["Gateway"]
        for key, status in statuses.items():
            listed = [a["value"] for a in status.get("addresses", [])]
            if address not in listed:
                raise RuntimeError(f"Gateway {key} in {cluster}: status.addresses {listed} lacks {address}")
