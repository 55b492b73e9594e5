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


def _translate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import yaml
    from google.protobuf import json_format

    from .config import ConfigError
    from .manifests import read_clusterset_dir
    from .model import Gateway, ManifestError
    from .pipeline import translate_cluster

    try:
        properties, objects = read_clusterset_dir(Path(args.f))
    except (ManifestError, ConfigError) as error:
        print(f"mcgw translate: {error}", file=sys.stderr)
        return 2
    names = [c.name for c in properties.clusters]
    if args.cluster and args.cluster not in names:
        print(f"mcgw translate: no cluster {args.cluster!r} in {args.f} (clusters: {', '.join(names)})",
              file=sys.stderr)
        return 2
    output: dict[str, object] = {}
    for name in names:
        if args.cluster and name != args.cluster:
            continue
        addresses = {(o.metadata.namespace, o.metadata.name): [a.value for a in o.spec.addresses]
                     for o in objects[name] if isinstance(o, Gateway)}
        result = translate_cluster(name, objects[name], addresses)
        kinds = {"Listener": "listeners", "RouteConfiguration": "routes", "Cluster": "clusters",
                 "ClusterLoadAssignment": "endpoints"}
        gateways: dict[str, dict[str, list[object]]] = {}
        for (ns, gateway), messages in sorted(result.resources.items()):
            grouped: dict[str, list[object]] = {kind: [] for kind in kinds.values()}
            for message in messages:
                grouped[kinds[message.DESCRIPTOR.name]].append(json.loads(json_format.MessageToJson(message)))
            gateways[f"{ns}/{gateway}"] = grouped
        output[name] = {"status": result.statuses(), "xds": gateways}
    if args.o == "json":
        print(json.dumps(output, indent=2))
    else:
        print(yaml.safe_dump(output, sort_keys=False, width=120), end="")
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
    translate = commands.add_parser(
        "translate", help="offline: manifests of every member cluster in, statuses and Envoy resources out")
    translate.add_argument("-f", required=True, metavar="DIR",
                           help="DIR/<cluster>/*.yaml per member cluster, and optionally DIR/clusterset.yaml")
    translate.add_argument("-o", choices=["yaml", "json"], default="yaml")
    translate.add_argument("--cluster", help="only this member cluster")
    translate.set_defaults(handler=_translate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(args.handler(args))
