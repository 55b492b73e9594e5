"""``python -m tests.e2e.testbed.podrunner``: an emulated kubelet for one member cluster of the test bed.

Registers Node ``--node``, binds unscheduled pods to it and runs them as local processes, each pod in a
network namespace of its own on ``--bridge`` with an address from ``--pod-pool``. Runs until SIGTERM or
SIGINT (or until ``--owner-pid`` exits), then stops every pod's containers and removes their namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

from .images import Image, default_table, load_table, write_mcgw_launcher
from .kubeapi import KubeApi, load_kubeconfig
from .logs import LogServer
from .netns import AddressPool
from .node import NodeAgent, NodeFacts, default_capacity
from .pod import Settings
from .runner import Runner

# The checkout this runner runs from: the mcgw image's code (the venv may be another checkout's).
CHECKOUT = Path(__file__).resolve().parents[4]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.testbed.podrunner", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--context")
    parser.add_argument("--node", required=True, help="the Node object this runner owns")
    parser.add_argument("--cluster", required=True, help="member cluster name (in namespace names and labels)")
    parser.add_argument("--bridge", required=True, help="the host bridge pods' veths join")
    parser.add_argument("--host-ip", required=True, help="the host's address on the bridge: the Node's InternalIP")
    parser.add_argument("--prefixlen", type=int, required=True, help="prefix length of pod addresses")
    parser.add_argument("--pod-pool", required=True, help="FIRST-LAST: the addresses pods get")
    parser.add_argument("--pod-cidr", required=True, help="the Node's spec.podCIDR")
    parser.add_argument("--state-dir", type=Path, required=True, help="pod directories, logs, certificates")
    parser.add_argument("--owner-pid", type=int, help="stop once this process is gone")
    parser.add_argument("--images", type=Path, action="append", default=[],
                        help="JSON list of extra image entries (repository, entrypoint, cmd, env, workingDir, "
                             "binaries, flagsGoTo); they take precedence over the built-in table")
    parser.add_argument("--envoy", type=Path, help="executable for envoyproxy/envoy images (default: the venv's)")
    parser.add_argument("--mcgw", type=Path, help="executable for ghcr.io/mcgw-io/mcgw images (default: the venv's)")
    parser.add_argument("--echo-basic", type=Path, default=Path(os.environ["MCGW_ECHO_BASIC"])
                        if os.environ.get("MCGW_ECHO_BASIC") else None,
                        help="executable for the Gateway API echo-basic images (default: $MCGW_ECHO_BASIC)")
    parser.add_argument("--peer-api", action="append", default=[], metavar="HOST:PORT",
                        help="another member cluster's API server, relayed into every pod at 127.0.0.1:PORT as "
                             "its own cluster's is (repeatable)")
    parser.add_argument("--kubelet-port", type=int, default=0, help="log server port (0: any free one)")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--crash-backoff", type=float, default=10.0, help="first CrashLoopBackOff delay (s)")
    parser.add_argument("--shutdown-grace", type=float, default=5.0,
                        help="longest a container gets to stop when the runner stops (s)")
    return parser.parse_args(argv)


def _envoy_default() -> Path | None:
    try:
        from mcgw.dataplane.process import envoy_binary

        return envoy_binary()
    except Exception:
        return None


def image_table(args: argparse.Namespace) -> list[Image]:
    extra = [image for path in args.images for image in load_table(path)]
    mcgw = args.mcgw or Path(sys.executable).parent / "mcgw"
    builtin = default_table(args.envoy or _envoy_default(), mcgw if mcgw.exists() else None, args.echo_basic,
                            mcgw_source=CHECKOUT, mcgw_launcher=write_mcgw_launcher(args.state_dir / "mcgw-image-bin"))
    return [*extra, *builtin]


def serving_certificate(args: argparse.Namespace) -> tuple[Path, Path]:
    """The log server's certificate: given, or issued by a CA of the runner's own (pki.py)."""
    if args.tls_cert and args.tls_key:
        return args.tls_cert, args.tls_key
    from ..pki import CertificateAuthority

    ca = CertificateAuthority(args.state_dir / "pki", f"mcgw-testbed-kubelet-ca-{args.cluster}")
    issued = ca.issue("kubelet", args.node, server=True, ips=(args.host_ip,), dns=(args.node,))
    return issued.cert, issued.key


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def _version(api: KubeApi) -> str:
    for _ in range(60):
        try:
            return str((await api.get("/version"))["gitVersion"])
        except Exception:
            await asyncio.sleep(1)
    raise RuntimeError("the API server did not answer /version")


async def main_async(args: argparse.Namespace) -> None:
    if sys.version_info < (3, 12):
        # One waiter thread per child otherwise; pidfds let the loop itself wait for every container.
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    config = load_kubeconfig(args.kubeconfig, args.context)
    api = KubeApi(config)
    server = urlparse(config.server)
    first, last = args.pod_pool.split("-")
    cert, key = serving_certificate(args)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host_ip, args.kubelet_port))
    listener.listen(128)
    listener.setblocking(False)
    capacity = default_capacity()
    probe_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, ssl=False))
    settings = Settings(
        api=api, node=args.node, cluster=args.cluster, host_ip=args.host_ip, bridge=args.bridge,
        prefixlen=args.prefixlen, pool=AddressPool(first, last), state_dir=args.state_dir, images=image_table(args),
        owner=os.getpid(), root_ca=_read(config.ca_file), api_host=server.hostname or "127.0.0.1",
        api_port=server.port or 443, allocatable=capacity, probe_session=probe_session,
        crash_backoff=args.crash_backoff, peer_apis=tuple(_host_port(peer) for peer in args.peer_api))
    facts = NodeFacts(args.node, args.cluster, args.host_ip, int(listener.getsockname()[1]),
                      str(ipaddress.ip_network(args.pod_cidr, strict=False)), capacity, await _version(api))
    runner = Runner(settings, NodeAgent(api, facts), args.shutdown_grace)
    logs = LogServer(runner.find_log, listener, cert, key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await logs.start()
    try:
        await runner.run(stop, args.owner_pid)
    finally:
        await logs.stop()
        await probe_session.close()
        await api.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    main()
