"""The ``mcgw`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(listen_port=args.port, api_type="GRPC" if args.sotw else "DELTA_GRPC", once=args.once))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcgw", description="Multi-cluster Gateway API controller and xDS server")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="xDS server + example snapshot + one real Envoy, all on loopback")
    demo.add_argument("--port", type=int, default=10080, help="the Envoy listener port on 127.0.0.1")
    demo.add_argument("--sotw", action="store_true", help="use state-of-the-world ADS instead of delta")
    demo.add_argument("--once", action="store_true", help="exit after showing the update instead of serving")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(args.handler(args))
