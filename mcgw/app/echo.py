"""A sample backend that says who answered: cluster, namespace, pod, and what it received.

The demo and the examples run it on loopback; the test bed runs it inside a cluster's network
namespace (``python -m mcgw.app.echo``). Tests and benchmarks read the JSON to tell which cluster served.

Failover tests need a backend that fails on demand without dying: ``POST /__mcgw/fault`` with
``{"mode": "503"}`` makes every answer, ``/healthz`` included, a 503 until ``{"mode": "ok"}``.

With ``--tls-cert`` and ``--tls-key`` it serves HTTPS with that certificate: the backend of a TLS
passthrough route, whose clients must see this certificate and not the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
from pathlib import Path

from aiohttp import web

FAULT_PATH = "/__mcgw/fault"
FAULT_MODES = ("ok", "503")


def make_app(cluster: str, namespace: str, pod: str) -> web.Application:
    fault = {"mode": "ok"}

    def failing() -> web.Response | None:
        if fault["mode"] == "503":
            return web.json_response({"cluster": cluster, "pod": pod, "fault": "503"}, status=503)
        return None

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        if (failed := failing()) is not None:
            return failed
        return web.json_response(
            {
                "cluster": cluster,
                "namespace": namespace,
                "pod": pod,
                "hostname": socket.gethostname(),
                "method": request.method,
                "path": request.path_qs,
                "host": request.host,
                "headers": dict(request.headers),
                "body_bytes": len(body),
            }
        )

    async def health(_: web.Request) -> web.Response:
        return failing() or web.json_response({"ok": True, "cluster": cluster, "pod": pod})

    async def set_fault(request: web.Request) -> web.Response:
        try:
            mode = (await request.json())["mode"]
        except (ValueError, KeyError, TypeError):
            mode = None
        if mode not in FAULT_MODES:
            return web.json_response({"error": f"send {{\"mode\": ...}} with one of {', '.join(FAULT_MODES)}"},
                                     status=400)
        fault["mode"] = mode
        return web.json_response({"mode": mode, "cluster": cluster, "pod": pod})

    async def get_fault(_: web.Request) -> web.Response:
        return web.json_response({"mode": fault["mode"], "cluster": cluster, "pod": pod})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_post(FAULT_PATH, set_fault)
    app.router.add_get(FAULT_PATH, get_fault)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(host: str, port: int, cluster: str, namespace: str, pod: str,
                tls: ssl.SSLContext | None = None) -> None:
    runner = web.AppRunner(make_app(cluster, namespace, pod), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    scheme = "https" if tls else "http"
    print(f"echo backend {cluster}/{namespace}/{pod} listening on {scheme}://{host}:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--pod", required=True)
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    args = parser.parse_args()
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls = server_tls(args.tls_cert, args.tls_key) if args.tls_cert else None
    asyncio.run(serve(args.host, args.port, args.cluster, args.namespace, args.pod, tls))


if __name__ == "__main__":
    main()
