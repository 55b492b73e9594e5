"""A gRPC sample backend that says which cluster answered: the demo's, the failover tests' and benchmarks'.

The gRPC counterpart of ``mcgw.app.echo``: the demo runs it on loopback, the test bed inside a cluster's
network namespace (``python -m mcgw.app.grpc_echo``). No generated stubs: messages are raw bytes.

- every method of any service other than the two below answers JSON bytes
  (``{"cluster", "namespace", "pod", "method"}``), which the open-loop load reads like the HTTP echo's;
- ``grpc.health.v1.Health/Check`` answers SERVING, which mcgw's health checks of gRPC backends ask for;
- ``mcgw.echo.Fault/Set`` with the mode's name as the request: ``"unavailable"`` makes every call
  fail with ``UNAVAILABLE`` and the health service answer NOT_SERVING, until ``"ok"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable

import grpc

FAULT_METHOD = "/mcgw.echo.Fault/Set"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"
FAULT_MODES = ("ok", "unavailable")
# grpc.health.v1.HealthCheckResponse{status: SERVING} and {status: NOT_SERVING}, encoded.
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"
# Test traffic goes to the test bed only, never through a proxy the environment names.
CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)


class EchoHandler:
    """Every unary method; the fault mode is shared by all of them (a ``grpc.GenericRpcHandler``: grpc asks
    only for ``service``)."""

    def __init__(self, cluster: str, namespace: str, pod: str) -> None:
        self.identity = {"cluster": cluster, "namespace": namespace, "pod": pod}
        self.mode = "ok"

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        if method == FAULT_METHOD:
            return grpc.unary_unary_rpc_method_handler(self._set_fault)
        if method == HEALTH_METHOD:
            return grpc.unary_unary_rpc_method_handler(self._health)
        return grpc.unary_unary_rpc_method_handler(self._echo(method))

    def _echo(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]:
        async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            if self.mode == "unavailable":
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.identity['pod']} is failing on purpose")
            return json.dumps({**self.identity, "method": method}).encode()

        return echo

    async def _health(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return NOT_SERVING if self.mode == "unavailable" else SERVING

    async def _set_fault(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        mode = request.decode(errors="replace")
        if mode not in FAULT_MODES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"send one of {', '.join(FAULT_MODES)}")
        self.mode = mode
        return json.dumps({**self.identity, "mode": mode}).encode()


def serving(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the backend at ``address:port`` answers its health service with SERVING."""
    with grpc.insecure_channel(f"{address}:{port}", CHANNEL_OPTIONS) as channel:
        try:
            answer: bytes = channel.unary_unary(HEALTH_METHOD)(b"", timeout=timeout)
        except grpc.RpcError:
            return False
    return answer == SERVING


def answered_by(url: str, timeout: float = 2.0) -> str:
    """The cluster that answered one unary call of ``grpc://host:port/package.Service/Method`` (the open-loop
    load's form), or ``""`` when the call failed."""
    target, _, method = url.removeprefix("grpc://").partition("/")
    with grpc.insecure_channel(target, CHANNEL_OPTIONS) as channel:
        try:
            answer: bytes = channel.unary_unary(f"/{method}")(b"", timeout=timeout)
        except grpc.RpcError:
            return ""
    try:
        return str(json.loads(answer).get("cluster", ""))
    except (ValueError, AttributeError):
        return ""


def set_mode(address: str, port: int, mode: str) -> dict[str, str]:
    """Switch the backend at ``address:port`` to ``mode`` (one of ``FAULT_MODES``); returns its answer."""
    with grpc.insecure_channel(f"{address}:{port}", CHANNEL_OPTIONS) as channel:
        answer: bytes = channel.unary_unary(FAULT_METHOD)(mode.encode(), timeout=5)
    result: dict[str, str] = json.loads(answer)
    return result


async def start(host: str, port: int, cluster: str, namespace: str, pod: str) -> grpc.aio.Server:
    """A started backend on ``host:port``; ``stop(None)`` ends it."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((EchoHandler(cluster, namespace, pod),))
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server


async def serve(host: str, port: int, cluster: str, namespace: str, pod: str) -> None:
    server = await start(host, port, cluster, namespace, pod)
    print(f"gRPC echo backend {cluster}/{namespace}/{pod} listening on {host}:{port}", flush=True)
    await server.wait_for_termination()


def call(target: str, method: str, timeout: float = 5.0) -> str:
    """One unary call of ``method`` (``package.Service/Method``) at ``target`` (``host:port``): the answer, or
    the gRPC status and message of a failed call."""
    with grpc.insecure_channel(target, CHANNEL_OPTIONS) as channel:
        try:
            answer: bytes = channel.unary_unary(f"/{method}")(b"", timeout=timeout)
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
    return answer.decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--call", nargs=2, metavar=("HOST:PORT", "SERVICE/METHOD"),
                        help="make one unary call (through a gateway, say) and print the answer, instead of serving")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--cluster")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--pod")
    args = parser.parse_args()
    if args.call:
        print(call(*args.call))
        return
    if not (args.host and args.cluster and args.pod):
        parser.error("serving needs --host, --cluster and --pod")
    asyncio.run(serve(args.host, args.port, args.cluster, args.namespace, args.pod))


if __name__ == "__main__":
    main()
