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
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from mcgw.app import grpc_echo
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
    protocol: str = "http"  # the EndpointSlice port's name says which sample backend: grpc, or else HTTP


# Stops a sample backend.
Stop = Callable[[], Awaitable[object]]
GRPC_PORT = 8081
GRPC_METHOD = "demo.Greeter/Hello"
TCP_PORT = 5432  # a TCPRoute forwards it, bytes only; the sample ledger answers HTTP, so curl shows who it is


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
    command: str  # what a user runs to try it
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
            for port, name in ((p.port, p.name) for p in item.ports if p.port):
                protocol = "grpc" if name == "grpc" else "http"
                for index, endpoint in enumerate(item.endpoints):
                    for address in endpoint.addresses:
                        if ipaddress.ip_address(address).is_loopback:
                            backends.append(Backend(cluster, item.metadata.namespace, f"{service}-{index}",
                                                    address, port, protocol))
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


def grpc_command(address: str) -> str:
    """What a user runs to make the demo's gRPC call through a gateway (no grpcurl needed)."""
    return f".venv/bin/python -m mcgw.app.grpc_echo --call {address}:{GRPC_PORT} {GRPC_METHOD}"


def _grpc_cluster(address: str) -> str:
    """The cluster that answered one gRPC call through the gateway at ``address``, or the failure."""
    answer = grpc_echo.call(f"{address}:{GRPC_PORT}", GRPC_METHOD)
    try:
        return str(json.loads(answer)["cluster"])
    except (ValueError, KeyError, TypeError):
        return answer.split(":", 1)[0]  # the gRPC status of a failed call


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
        tcp = f"http://{address}:{TCP_PORT}/"
        reached = await asyncio.to_thread(_request, tcp)
        checks.append(Check(
            f"{cluster}: a TCP connection to port {TCP_PORT} (TCPRoute to the ledger ServiceImport) is served locally",
            f"curl -s {tcp}", f"200 from cluster {cluster}, service ledger",
            f"{reached.status} from cluster {reached.cluster}, service {_service(reached.pod)}",
            (reached.status, reached.cluster, _service(reached.pod)) == (200, cluster, "ledger")))
        answered = await asyncio.to_thread(_grpc_cluster, address)
        checks.append(Check(
            f"{cluster}: a gRPC call of {GRPC_METHOD} (GRPCRoute to the greeter ServiceImport) is answered locally",
            grpc_command(address), f"an answer from cluster {cluster}", f"an answer from cluster {answered}"
            if answered in gateways else answered, answered == cluster))
    return checks


FAILOVER_SAMPLES = 40


async def _serve(backend: Backend) -> Stop:
    if backend.protocol == "grpc":
        server = await grpc_echo.start(backend.address, backend.port, backend.cluster, backend.namespace, backend.pod)
        return lambda: server.stop(None)
    runner = web.AppRunner(make_app(backend.cluster, backend.namespace, backend.pod), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, backend.address, backend.port).start()
    return runner.cleanup


@dataclass(frozen=True)
class Probe:
    """One way of reaching a ServiceImport through a gateway: what it is, how a user tries it, who answers."""

    what: str
    command: str
    answered_by: Callable[[], str]  # the cluster that answered, or what failed


def _http_cluster(url: str) -> str:
    answer = _request(url)
    return answer.cluster if answer.status == 200 else f"HTTP {answer.status}"


def failover_probes(gateway: str) -> list[Probe]:
    url = f"http://{gateway}:8080/failover"
    return [Probe("HTTP /failover (HTTPRoute to the store ServiceImport)", f"curl -s {url}",
                  lambda: _http_cluster(url)),
            Probe(f"gRPC {GRPC_METHOD} (GRPCRoute to the greeter ServiceImport)", grpc_command(gateway),
                  lambda: _grpc_cluster(gateway)),
            Probe(f"a new TCP connection to port {TCP_PORT} (TCPRoute to the ledger ServiceImport)",
                  f"curl -s http://{gateway}:{TCP_PORT}/", lambda: _http_cluster(f"http://{gateway}:{TCP_PORT}/"))]


async def _answers(probe: Probe, count: int) -> collections.Counter[str]:
    """Which cluster answered each of ``count`` tries (a failed one counts under what failed)."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        seen[await asyncio.to_thread(probe.answered_by)] += 1
    return seen


def _tally(seen: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))


async def failover_checks(probes: list[Probe], local: str, next_cluster: str, stops: list[Stop],
                          backends: list[Backend]) -> tuple[list[Check], list[Stop]]:
    """Stop ``local``'s backends of the probed services, show that every probe is answered by the next cluster
    without a failure, then start them again and show traffic come back."""
    checks = []
    for probe in probes:
        before = await _answers(probe, 10)
        checks.append(Check(f"{local}: {probe.what} is served locally while {local}'s backends are up",
                            probe.command, f"answers from cluster {local}", _tally(before), set(before) == {local}))
    for stop in stops:
        await stop()
    for probe in probes:
        during = await _answers(probe, FAILOVER_SAMPLES)
        checks.append(Check(
            f"{local}'s backends stopped: {probe.what} is answered by the next priority, nothing fails",
            probe.command, f"answers from cluster {next_cluster} ({local}'s failoverOrder), 0 failed",
            _tally(during), set(during) == {next_cluster}, steady=False))
    restarted = [await _serve(backend) for backend in backends]
    for probe in probes:
        deadline = asyncio.get_running_loop().time() + 30
        after: collections.Counter[str] = collections.Counter()
        while asyncio.get_running_loop().time() < deadline:
            after = await _answers(probe, 5)
            if set(after) == {local}:
                break
            await asyncio.sleep(0.5)
        checks.append(Check(f"{local}'s backends are back: {probe.what} returns to them", probe.command,
                            f"answers from cluster {local}", _tally(after), set(after) == {local}))
    return checks, restarted


async def _reported_serving(standalone: Standalone, probe: Probe, local: str, within: float = 6.0) -> None:
    """Send light traffic until the load reports say ``local`` serves it (so a move away is an event)."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        for traffic in standalone.load.traffic.services(time.time()):
            serving = [level for level in traffic.levels if level.priority == traffic.serving_priority]
            if traffic.key.cluster == local and serving and local in serving[0].clusters:
                return
        await _answers(probe, 5)
        await asyncio.sleep(0.2)


async def traffic_check(standalone: Standalone, probe: Probe, local: str, next_cluster: str,
                        within: float = 8.0) -> Check:
    """What the gateways' load reports made of the failover just shown: an event from ``local`` to
    ``next_cluster`` through ``local``'s Gateway, and one back (light traffic keeps the reports coming)."""
    deadline = asyncio.get_running_loop().time() + within
    moves: list[str] = []
    while True:
        moves = [f"{'/'.join(e.from_clusters)} -> {'/'.join(e.to_clusters)}" for e in standalone.load.traffic.events
                 if e.key.cluster == local]
        there = f"{local} -> {next_cluster}"
        if there in moves and f"{next_cluster} -> {local}" in moves[moves.index(there):]:
            break
        if asyncio.get_running_loop().time() > deadline:
            break
        await _answers(probe, 5)
        await asyncio.sleep(0.2)
    wanted = [f"{local} -> {next_cluster}", f"{next_cluster} -> {local}"]
    return Check(f"the dashboard's failover timeline shows it, from the {local} Envoy's load reports",
                 f"open http://127.0.0.1:{standalone.admin_port}/", " then ".join(wanted),
                 ", ".join(dict.fromkeys(moves)) or "no failover event",
                 all(w in moves for w in wanted), steady=False)


async def run_demo(root: Path = QUICKSTART, xds_listen: str = "127.0.0.1:0", admin_listen: str = "127.0.0.1:19000",
                   once: bool = False, say: Callable[[str], None] | None = None) -> list[Check]:
    tell = say or (lambda message: print(message, flush=True))
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(tell, "stopped every Envoy, the backends, the xDS and admin servers")
        backends = demo_backends(root)
        runners: dict[Backend, Stop] = {}
        for backend in backends:
            runners[backend] = await _serve(backend)

        async def stop_backends() -> None:
            for stop in runners.values():
                await stop()

        cleanup.push_async_callback(stop_backends)
        tell(f"1. {len(backends)} sample backends on loopback, from the EndpointSlices in {root}")

        standalone = await cleanup.enter_async_context(Standalone(StandaloneOptions(
            root, xds_listen=xds_listen, admin_listen=admin_listen)))
        tell(f"2. mcgw standalone: xDS on 127.0.0.1:{standalone.xds_port}, "
             f"admin on http://127.0.0.1:{standalone.admin_port}; the live dashboard: "
             f"http://127.0.0.1:{standalone.admin_port}/")
        await standalone.guard(standalone.wait_ready())
        assert standalone.fleet is not None
        gateways = {}
        for (cluster, (namespace, name)), envoy in sorted(standalone.fleet.envoys.items()):
            gateways[cluster] = envoy.address
            tell(f"3. cluster {cluster}: Envoy for Gateway {namespace}/{name} is LIVE on {envoy.address}:8080, "
                 f":{GRPC_PORT} and :{TCP_PORT} "
                 f"(Envoy admin 127.0.0.1:{envoy.process.admin_port})")
        _check_gateway_addresses(standalone, gateways)
        checks = await example_checks(gateways)
        tell("4. example requests (sent by the demo just now):")
        _report(tell, checks)
        if "east" in gateways and root == QUICKSTART:
            local = [b for b in backends if b.cluster == "east" and _service(b.pod) in ("store", "greeter", "ledger")]
            stopped = [runners.pop(b) for b in local]
            probes = failover_probes(gateways["east"])
            await _reported_serving(standalone, probes[0], "east")
            failover, restarted = await failover_checks(probes, "east", "central", stopped, local)
            runners.update(zip(local, restarted, strict=True))
            failover.append(await traffic_check(standalone, probes[0], "east", "central"))
            tell("5. failover through the ServiceImports (east prefers central, then west):")
            _report(tell, failover)
            checks += failover
        if not once:
            tell("\nTry them yourself (each gateway answers on its own loopback address):")
            for command, expected in dict.fromkeys((c.command, c.expected) for c in checks if c.steady):
                tell(f"  {command}    # {expected}")
            tell(f"  curl -s http://127.0.0.1:{standalone.admin_port}/api/status    "
                 "# every object's computed status, and the connected Envoys with their ACK/NACK state")
            tell(f"  open http://127.0.0.1:{standalone.admin_port}/    # the live dashboard: who serves the traffic")
            tell(f"Edit the files under {root} and the change is applied within a second. Ctrl-C stops it all.")
            await standalone.serve()
    return checks


def _report(tell: Callable[[str], None], checks: list[Check]) -> None:
    for check in checks:
        tell(f"   [{'ok' if check.ok else 'UNEXPECTED'}] {check.description}\n"
             f"        {check.command}\n        expected: {check.expected}\n        observed: {check.observed}")


def _check_gateway_addresses(standalone: Standalone, gateways: dict[str, str]) -> None:
    """The address each Envoy listens on is the one in the Gateway's computed status."""
    assert standalone.reconciler is not None
    for cluster, address in gateways.items():
        statuses = standalone.reconciler.outputs[cluster].statuses()["Gateway"]
        for key, status in statuses.items():
            listed = [a["value"] for a in status.get("addresses", [])]
            if address not in listed:
                raise RuntimeError(f"Gateway {key} in {cluster}: status.addresses {listed} lacks {address}")
