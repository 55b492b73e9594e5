"""``python -m tests.e2e.testbed.loadbalancer``: the load balancer of one member cluster, until SIGTERM.

On SIGTERM or SIGINT it closes its listeners and deletes its link, which removes every address it
added; Service status is left as it is, so a restarted load balancer gives each Service its address back.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import sys
from pathlib import Path

from kubernetes.aio import config

from .controller import LoadBalancer
from .host import AddressLink, bridge_networks, sweep_stale_lb
from .plan import LB_CLASS, TESTBED_NETWORKS, Pool, parse_pool
from .proxy import Proxy

log = logging.getLogger("loadbalancer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.testbed.loadbalancer", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument("--cluster", required=True, help="the member cluster's name (logs, Events, link alias)")
    parser.add_argument("--pool", required=True, type=parse_pool, help="A.B.C.D/N or A.B.C.D-E.F.G.H")
    parser.add_argument("--bridge", default="", help="the test network's bridge; the pool should be on-link there")
    parser.add_argument("--class", dest="lb_class", default=LB_CLASS,
                        help=f"the spec.loadBalancerClass that is ours besides none (default {LB_CLASS})")
    parser.add_argument("--endpoint-network", dest="endpoint_networks", action="append", type=ipaddress.IPv4Network,
                        help="forward only to endpoints inside this network (repeatable; default "
                             f"{', '.join(map(str, TESTBED_NETWORKS))})")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="written once both watches have listed and the first pass is done")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _check_bridge(bridge: str, pool: Pool) -> None:
    networks = [ipaddress.ip_network(n, strict=False) for n in bridge_networks(bridge)]
    if bridge and not any(pool.first in n and pool.last in n for n in networks):
        log.warning("pool %s is not on-link on bridge %s (%s): cluster namespaces may not reach it",
                    pool, bridge, ", ".join(map(str, networks)) or "no IPv4 address")


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    swept = sweep_stale_lb()
    if swept:
        log.info("removed links of load balancers that are gone: %s", ", ".join(swept))
    _check_bridge(args.bridge, args.pool)
    link = AddressLink.create(args.cluster, args.bridge)
    proxy = Proxy()
    try:
        api = await config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(args.kubeconfig), context=args.context, persist_config=False)
        balancer = LoadBalancer(api, args.cluster, args.pool, link, proxy, args.lb_class,
                                args.endpoint_networks or TESTBED_NETWORKS)

        def ready() -> None:
            log.info("cluster %s: ready, pool %s on link %s (%s)", args.cluster, args.pool, link.name, link.kind)
            if args.ready_file is not None:
                args.ready_file.write_text(json.dumps({"pid": os.getpid(), "link": link.name,
                                                       "pool": str(args.pool)}))

        task = asyncio.create_task(balancer.run(ready))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stopping):
                pending.cancel()
            await asyncio.gather(task, stopping, return_exceptions=True)
            await balancer.close()
            await api.close()
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError("the load balancer stopped") from task.exception()
    finally:
        proxy.close()
        link.delete()
        log.info("cluster %s: stopped; link %s removed", args.cluster, link.name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(args))
    except Exception:
        log.exception("load balancer failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
