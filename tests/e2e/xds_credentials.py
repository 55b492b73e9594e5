"""xDS client credentials for Envoys a test starts itself (on the host, or from ``mcgw gateway-manifests``)
against an ``mcgw run`` without provisioning: issued by the running controller's CA for the Envoy's node
group, as provisioning would, so those tests run over mTLS like everything else."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import XdsTarget
from mcgw.provisioning.bootstrap import CA_FILE, CERTIFICATE_FILE, KEY_FILE, NodeIdentity, XdsClientSds, sds_documents
from mcgw.provisioning.ca import Credentials
from tests.e2e.testbed import ClusterSet


def issue(controller: Controller, node: NodeIdentity) -> Credentials:
    assert controller.identities is not None, "the controller runs without its CA (xds.insecure or xds.tls)"
    return controller.identities.for_gateway(node.cluster, node.namespace, node.gateway, None)


def host_envoy_tls(controller: Controller, node: NodeIdentity, directory: Path,
                   host: str = "127.0.0.1") -> XdsClientSds:
    """Credentials files and the SDS files that point at them, under ``directory``; the bootstrap's xDS TLS."""
    base = directory / f"xds-{node.cluster}-{node.namespace}-{node.gateway}-{secrets.token_hex(2)}"
    tls = XdsClientSds(host, base / "credentials", base / "sds")
    tls.directory.mkdir(parents=True)
    tls.sds_directory.mkdir()
    credentials = issue(controller, node)
    for name, content in ((CERTIFICATE_FILE, credentials.cert), (KEY_FILE, credentials.key),
                          (CA_FILE, credentials.ca)):
        (tls.directory / name).write_bytes(content)
    (tls.directory / KEY_FILE).chmod(0o600)
    for name, document in sds_documents(tls).items():
        (tls.sds_directory / name).write_text(yaml.safe_dump(document))
    return tls


@contextlib.asynccontextmanager
async def controller_with_east_envoy(clusterset: ClusterSet, config: Path, xds_port: int, namespace: str,
                                     directory: Path) -> AsyncIterator[Controller]:
    """``mcgw run`` from ``config`` and, once it is ready, a real Envoy on the host for east's Gateway
    ``namespace/public`` over mTLS, with the credentials provisioning would give it."""
    async with Controller(load_run_config(config)) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        node = NodeIdentity("east", namespace, "public")
        await asyncio.to_thread(clusterset.start_envoy, "east", node, XdsTarget(
            "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, directory)))
        yield controller
