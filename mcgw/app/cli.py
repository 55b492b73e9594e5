"""The ``mcgw`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcgw.app.operator import add_commands
from mcgw.dataplane.manifests import DEFAULT_IMAGE
from mcgw.support.logs import add_logging_arguments, configure_logging


def _xds_demo(args: argparse.Namespace) -> int:
    from mcgw.app.xds_demo import run_demo

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(listen_port=args.port, api_type="GRPC" if args.sotw else "DELTA_GRPC", once=args.once))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcgw.app.config import ConfigError
    from mcgw.app.demo import run_demo
    from mcgw.app.lifecycle import BackgroundTaskFailed, run_until_signalled
    from mcgw.objects.model import ManifestError

    try:
        checks = run_until_signalled(lambda: run_demo(Path(args.f), admin_listen=args.admin_listen, once=args.once),
                                     "mcgw demo")
    except (ConfigError, ManifestError, OSError) as error:
        print(f"mcgw demo: {error}", file=sys.stderr)
        return 2
    except BackgroundTaskFailed as error:
        print(f"mcgw demo: {error}", file=sys.stderr)
        return 1
    return 0 if checks is None or all(c.ok for c in checks) else 1


def _serve(name: str, start: Callable[[], Any], user_errors: tuple[type[Exception], ...]) -> int:
    """Run a serving command until a signal: 2 for an error in what the user gave, 1 after a background
    failure (logged with its traceback when it happened; the shutdown ran), 0 after a clean stop."""
    from mcgw.app.lifecycle import BackgroundTaskFailed, run_until_signalled

    try:
        run_until_signalled(start(), name)
    except user_errors as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    except BackgroundTaskFailed:
        return 1
    return 0


def _standalone(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcgw.app.config import ConfigError
    from mcgw.app.standalone import StandaloneOptions, run_standalone
    from mcgw.objects.model import ManifestError

    def start() -> Any:
        options = StandaloneOptions(Path(args.f), xds_listen=args.xds_listen, admin_listen=args.admin_listen,
                                    with_envoy=not args.no_envoy, drain_grace=args.drain_grace)
        return lambda: run_standalone(options)

    return _serve("mcgw standalone", start, (ConfigError, ManifestError, OSError, ValueError))


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcgw.app.config import ConfigError, load_run_config
    from mcgw.app.run import run_controller

    def start() -> Any:
        config = load_run_config(Path(args.config))
        return lambda: run_controller(config, drain_grace=args.drain_grace)

    return _serve("mcgw run", start, (ConfigError, OSError))


def _gateway_manifests(args: argparse.Namespace) -> int:
    import datetime as dt

    from mcgw.app.config import split_listen
    from mcgw.dataplane.bootstrap import XdsTarget
    from mcgw.dataplane.manifests import gateway_manifests, to_yaml
    from mcgw.provisioning import credentials_name
    from mcgw.provisioning.ca import CertificateAuthority, spiffe_uri

    namespace, _, gateway = args.gateway.partition("/")
    if not namespace or not gateway or "/" in gateway:
        print(f"mcgw gateway-manifests: --gateway must be <namespace>/<name>, not {args.gateway!r}", file=sys.stderr)
        return 2
    try:
        host, port = split_listen(args.xds)
    except ValueError as error:
        print(f"mcgw gateway-manifests: --xds {error}", file=sys.stderr)
        return 2
    credentials = None
    uri = spiffe_uri(args.trust_domain, args.cluster, namespace, gateway)
    if bool(args.ca_cert) != bool(args.ca_key):
        print("mcgw gateway-manifests: --ca-cert and --ca-key go together", file=sys.stderr)
        return 2
    if args.ca_cert and not args.xds_insecure:
        try:
            ca = CertificateAuthority.from_pem(Path(args.ca_cert).read_bytes(), Path(args.ca_key).read_bytes())
        except (OSError, ValueError) as error:
            print(f"mcgw gateway-manifests: the CA: {error}", file=sys.stderr)
            return 2
        credentials = ca.issue_client(uri, dt.timedelta(seconds=args.lifetime))
    documents = gateway_manifests(args.cluster, namespace, gateway, XdsTarget(host, port), args.port,
                                  image=args.image, replicas=args.replicas, service_type=args.service_type,
                                  insecure=args.xds_insecure, credentials=credentials)
    if not args.xds_insecure and credentials is None:
        print(f"mcgw gateway-manifests: the Envoys need Secret {namespace}/{credentials_name(gateway)} (tls.crt, "
              f"tls.key, ca.crt) with a client certificate from mcgw's xDS CA whose URI SAN is {uri}; pass "
              "--ca-cert and --ca-key to include one", file=sys.stderr)
    elif credentials is not None:
        print(f"mcgw gateway-manifests: the included certificate expires {credentials.not_after.isoformat()} and is "
              "not renewed; print the manifests again before then", file=sys.stderr)
    print(to_yaml(documents), end="")
    return 0


def _translate(args: argparse.Namespace) -> int:
    import json
    import time

    import yaml
    from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
    from google.protobuf import json_format

    from mcgw.app.config import ConfigError
    from mcgw.objects.model import Gateway, ManifestError
    from mcgw.providers.files.manifests import read_clusterset_manifests
    from mcgw.runtime.incremental import McsInput
    from mcgw.runtime.pipeline import translate_cluster
    from mcgw.semantics.mcs import compute_mcs
    from mcgw.support import collector
    from mcgw.translate import redacted
    from mcgw.translate.describe import failover_levels

    try:
        properties, manifests = read_clusterset_manifests(Path(args.f))
    except (ManifestError, ConfigError) as error:
        print(f"mcgw translate: {error}", file=sys.stderr)
        return 2
    # As ``kubectl apply`` does: a refused object is reported and left out, the rest is translated, and
    # the exit code says that something was left out.
    rejected = [r.message for m in manifests.values() for r in m.rejected]
    for problem in rejected:
        print(f"mcgw translate: {problem}; left out", file=sys.stderr)
    for skip in (skip for m in manifests.values() for skip in m.skipped):
        print(f"mcgw translate: {skip}", file=sys.stderr)
    objects = {name: m.objects for name, m in manifests.items()}
    names = [c.name for c in properties.clusters]
    if args.cluster and args.cluster not in names:
        print(f"mcgw translate: no cluster {args.cluster!r} in {args.f} (clusters: {', '.join(names)})",
              file=sys.stderr)
        return 2
    output: dict[str, object] = {}
    view = compute_mcs(objects, {}, time.time()).view  # every cluster's exports, as the controller sees them
    mcs = McsInput(view.services, {c.name: c for c in properties.clusters})
    for name in names:
        if args.cluster and name != args.cluster:
            continue
        addresses = {(o.metadata.namespace, o.metadata.name): [a.value for a in o.spec.addresses]
                     for o in objects[name] if isinstance(o, Gateway)}
        with collector.paused():  # as the runtime translates: collections during a pass free nothing
            result = translate_cluster(name, objects[name], addresses, mcs=mcs)
        kinds = {"Listener": "listeners", "RouteConfiguration": "routes", "Cluster": "clusters",
                 "ClusterLoadAssignment": "endpoints", "Secret": "secrets"}
        gateways: dict[str, dict[str, list[object]]] = {}
        for (ns, gateway), messages in sorted(result.resources.items()):
            grouped: dict[str, Any] = {kind: [] for kind in kinds.values()}
            failover: dict[str, object] = {}
            for message in messages:
                grouped[kinds[message.DESCRIPTOR.name]].append(json.loads(json_format.MessageToJson(redacted(message))))
                if isinstance(message, ClusterLoadAssignment) and message.cluster_name.startswith("serviceimport/"):
                    failover[message.cluster_name] = failover_levels(message)
            grouped["failover"] = failover  # the levels of every ServiceImport backend, as Envoy gets them
            gateways[f"{ns}/{gateway}"] = grouped
        output[name] = {"status": result.statuses(), "xds": gateways}
    if args.o == "json":
        print(json.dumps(output, indent=2))
    else:
        print(yaml.safe_dump(output, sort_keys=False, width=120), end="")
    return 2 if rejected else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcgw", description="Multi-cluster Gateway API controller and xDS server")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="the controller and xDS server against the member clusters' API servers")
    run.add_argument("--config", required=True, metavar="FILE", help="ClusterSet config (see examples/run-config.yaml)")
    run.set_defaults(handler=_run)

    standalone = commands.add_parser(
        "standalone", help="the controller on files, with one real Envoy per Gateway per cluster on loopback")
    standalone.add_argument("-f", required=True, metavar="DIR",
                            help="DIR/<cluster>/*.yaml per member cluster, and optionally DIR/clusterset.yaml")
    standalone.add_argument("--xds-listen", default="127.0.0.1:18000", metavar="HOST:PORT")
    standalone.add_argument("--admin-listen", default="127.0.0.1:19000", metavar="HOST:PORT")
    standalone.add_argument("--no-envoy", action="store_true", help="serve xDS only; start no Envoy")
    standalone.set_defaults(handler=_standalone)
    for command in (run, standalone):
        command.add_argument("--drain-grace", type=float, default=1.0, metavar="SECONDS",
                             help="on SIGTERM/SIGINT, how long open xDS streams may last before they are closed")

    demo = commands.add_parser("demo", help="standalone mode on examples/quickstart: 3 clusters, 3 Envoys, backends")
    demo.add_argument("-f", default=str(Path(__file__).resolve().parents[2] / "examples" / "quickstart"),
                      metavar="DIR", help="the example to run (default: examples/quickstart)")
    demo.add_argument("--admin-listen", default="127.0.0.1:19000", metavar="HOST:PORT")
    demo.add_argument("--once", action="store_true", help="exit after the example requests instead of serving")
    demo.set_defaults(handler=_demo)

    xds_demo = commands.add_parser("xds-demo", help="the xDS server alone: an example snapshot and one real Envoy")
    xds_demo.add_argument("--port", type=int, default=10080, help="the Envoy listener port on 127.0.0.1")
    xds_demo.add_argument("--sotw", action="store_true", help="use state-of-the-world ADS instead of delta")
    xds_demo.add_argument("--once", action="store_true", help="exit after showing the update instead of serving")
    xds_demo.set_defaults(handler=_xds_demo)

    manifests = commands.add_parser(
        "gateway-manifests",
        help="what provisioning applies for one Gateway's Envoys (ServiceAccount, ConfigMap, Deployment, Service)")
    manifests.add_argument("--cluster", required=True, help="the member cluster ID the Envoys run in")
    manifests.add_argument("--gateway", required=True, metavar="NAMESPACE/NAME")
    manifests.add_argument("--xds", required=True, metavar="HOST:PORT", help="where the mcgw xDS server listens")
    manifests.add_argument("--port", type=int, action="append", default=[], help="a listener port (repeatable)")
    manifests.add_argument("--image", default=DEFAULT_IMAGE)
    manifests.add_argument("--replicas", type=int, default=2)
    manifests.add_argument("--service-type", default="LoadBalancer", choices=["LoadBalancer", "NodePort", "ClusterIP"])
    manifests.add_argument("--xds-insecure", action="store_true",
                           help="dial xDS in plaintext (only for an mcgw run with xds.insecure: true)")
    manifests.add_argument("--ca-cert", metavar="FILE", help="mcgw's xDS CA certificate (PEM), to include the "
                                                             "Envoys' client certificate Secret")
    manifests.add_argument("--ca-key", metavar="FILE", help="the xDS CA's key (PEM); it is not printed")
    manifests.add_argument("--trust-domain", default="mcgw", help="xds.trustDomain of mcgw run")
    manifests.add_argument("--lifetime", type=float, default=30 * 86400,
                           help="seconds the included client certificate is valid (default 30 days)")
    manifests.set_defaults(handler=_gateway_manifests)

    translate = commands.add_parser(
        "translate", help="offline: manifests of every member cluster in, statuses and Envoy resources out",
        epilog="An object the API would refuse is reported on stderr and left out; the rest is translated "
               "and the exit code is 2, as it is for input that cannot be read at all.")
    translate.add_argument("-f", required=True, metavar="DIR",
                           help="DIR/<cluster>/*.yaml per member cluster, and optionally DIR/clusterset.yaml")
    translate.add_argument("-o", choices=["yaml", "json"], default="yaml")
    translate.add_argument("--cluster", help="only this member cluster")
    translate.set_defaults(handler=_translate)
    operator = add_commands(commands)
    for command in (run, standalone, demo, xds_demo, manifests, translate, *operator):
        add_logging_arguments(command)
    demo.set_defaults(log_level="warning")  # the demo's own printout is the story; logs only when asked
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    # Translations and manifest parses run in worker threads beside the event loop (xDS, /healthz). With
    # the default 5 ms switch interval the loop waited up to 5 ms for the GIL after every system call, and
    # /healthz took up to 300 ms while a 1,000 x 64 route was parsed; at 1 ms it stays under 90 ms
    # (benchmarks/file_provider.py).
    sys.setswitchinterval(0.001)
    sys.exit(args.handler(args))
