"""``mcgw xds-demo``: the xDS server on its own, an example snapshot, and one real Envoy serving one route.

It shows the whole control-plane loop working on this machine: Envoy bootstraps from
``deploy/envoy/bootstrap.yaml``, connects over delta ADS, receives the example snapshot
(``examples/xds-demo/snapshot.yaml``), serves traffic to a sample backend, and applies a live
update. Everything listens on loopback and stops on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import string
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

from mcgw.app.echo import make_app
from mcgw.dataplane.bootstrap import AdsApiType, NodeIdentity, XdsTarget, render_bootstrap
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from xdsserver import Snapshot, SnapshotCache, XdsServer, message_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "xds-demo" / "snapshot.yaml"
NODE = NodeIdentity(cluster="demo", namespace="default", gateway="demo-gateway")


@dataclass(frozen=True)
class DemoResult:
    """What the demo observed, for the printout and for its test."""

    first_answer: dict[str, object]
    first_greeting: str
    second_greeting: str
    update_seconds: float
    acked: dict[str, str]


def example_snapshot(listen_port: int, backend_port: int, greeting: str) -> Snapshot:
    text = string.Template(EXAMPLE.read_text()).substitute(
        LISTEN_PORT=listen_port, BACKEND_PORT=backend_port, GREETING=greeting
    )
    return Snapshot.from_messages(message_from_dict(r) for r in yaml.safe_load(text)["resources"])


def _get(url: str) -> tuple[dict[str, object], str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read()), response.headers.get("x-mcgw-greeting", "")


async def _wait_for_greeting(url: str, greeting: str, within: float = 15.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            _, seen = await asyncio.to_thread(_get, url)
            if seen == greeting:
                return time.monotonic() - started
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"Envoy did not apply the update ({greeting!r}) within {within:.0f}s")


async def run_demo(listen_port: int = 10080, api_type: AdsApiType = "DELTA_GRPC", once: bool = False,
                   say: bool = True) -> DemoResult:
    def tell(message: str) -> None:
        if say:
            print(message, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="mcgw-demo-"))
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(tell, "stopped Envoy, the xDS server and the backend")
        cleanup.callback(shutil.rmtree, workdir, True)
        backend_port = free_port()
        runner = web.AppRunner(make_app("demo", "default", "echo-0"), access_log=None)
        await runner.setup()
        cleanup.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", backend_port).start()
        tell(f"1. sample backend 'echo' listening on 127.0.0.1:{backend_port}")

        cache = SnapshotCache()
        group = (NODE.cluster, f"{NODE.namespace}/{NODE.gateway}")
        cache.set_snapshot(group, example_snapshot(listen_port, backend_port, "hello from snapshot 1"))
        server = XdsServer(cache)
        xds_port = await server.start("127.0.0.1:0")
        cleanup.push_async_callback(server.stop)
        tell(f"2. xDS server (ADS, {api_type}) on 127.0.0.1:{xds_port}, serving node group {group[0]}/{group[1]}")

        admin_port = free_port()
        bootstrap = render_bootstrap(NODE, admin_port, XdsTarget("127.0.0.1", xds_port, api_type))
        envoy = EnvoyProcess("demo-envoy", bootstrap, admin_port, workdir)
        cleanup.callback(envoy.stop)
        await asyncio.to_thread(envoy.wait_live, 30.0)
        tell(f"3. Envoy {await asyncio.to_thread(_envoy_version, envoy)} is LIVE as node {NODE.node_id!r} "
             f"(cluster {NODE.cluster!r}); admin on 127.0.0.1:{admin_port}")
        url = f"http://127.0.0.1:{listen_port}/demo?from=mcgw"
        answer, greeting = await asyncio.to_thread(_get, url)
        tell(f"4. GET {url} through Envoy -> backend {answer['cluster']}/{answer['pod']} "
             f"saw path {answer['path']!r}; x-mcgw-greeting: {greeting!r}")

        cache.set_snapshot(group, example_snapshot(listen_port, backend_port, "hello from snapshot 2"))
        seconds = await _wait_for_greeting(url, "hello from snapshot 2")
        _, second = await asyncio.to_thread(_get, url)
        tell(f"5. published a new snapshot; Envoy applied it in {seconds * 1000:.0f} ms "
             f"(x-mcgw-greeting is now {second!r})")
        acked = {}
        for stream in server.status.nodes():
            for type_url, status in stream.types.items():
                acked[type_url.rsplit(".", 1)[-1]] = status.acked_version
        tell("6. versions Envoy ACKed: " + ", ".join(f"{k}={v}" for k, v in sorted(acked.items())))
        result = DemoResult(answer, greeting, second, seconds, acked)
        if not once:
            tell(f"\nTry it:  curl -si http://127.0.0.1:{listen_port}/anything\n"
                 f"         curl -s http://127.0.0.1:{admin_port}/config_dump | less\n"
                 "Expect a JSON answer from backend demo/echo-0 and the header x-mcgw-greeting. Ctrl-C stops it all.")
            await asyncio.Event().wait()
        return result


def _envoy_version(envoy: EnvoyProcess) -> str:
    info = json.loads(envoy.admin("/server_info"))
    return str(info.get("version", "?")).split("/")[1] if "/" in str(info.get("version")) else "?"
