"""One real member cluster: etcd, kube-apiserver and kube-controller-manager on loopback, with RBAC,
certificates and CRDs.

The controller-manager runs only the controllers that need no node: Deployments make ReplicaSets and
Pods, Services with a selector get EndpointSlices, owned objects are garbage-collected, deleted
namespaces are emptied, and every namespace gets its ``default`` ServiceAccount and ``kube-root-ca.crt``.
There is no scheduler, and no kubelet here: pods stay Pending unless something else binds and runs them.
Selectorless Services still get the EndpointSlices the test bed writes by hand.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .build import Artifacts
from .pki import ClusterPKI, generate
from .processes import ManagedProcess, free_port, wait_until

# Service ClusterIPs are only allocated, never routed to; keep them inside the benchmarking range too.
SERVICE_CIDR = "198.19.255.0/24"

# Controllers that work without nodes. Node lifecycle is left out: with no kubelet heartbeats it would
# taint and evict every pod. root-ca-cert-publisher writes the kube-root-ca.crt ConfigMap that every
# pod's service-account token volume refers to.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)


@dataclass
class MemberCluster:
    """A running member cluster and everything a test needs to talk to it."""

    name: str
    workdir: Path
    pki: ClusterPKI
    api_url: str
    etcd_url: str
    kubeconfig: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    start_seconds: float = 0.0
    artifacts: Artifacts | None = None
    extra_apiservers: list[ApiServer] = field(default_factory=list)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """A raw admin request to the API server; returns the decoded JSON body."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30) as response:
            return json.loads(response.read() or b"null")

    def add_apiserver(self, label: str, extra_args: Sequence[str] = ()) -> ApiServer:
        """Start one more kube-apiserver on this cluster's etcd, with its own port and kubeconfig.

        Tests that stop and restart an API server use one of these, so the cluster's own API server
        (shared by every test of the session) never goes away. ``extra_args`` are kube-apiserver
        flags, e.g. ``--watch-cache=false`` so that watches are served by etcd itself.
        """
        if self.artifacts is None:
            raise RuntimeError(f"cluster {self.name} was started without artifacts")
        workdir, port = self.workdir / f"apiserver-{label}", free_port()
        server = ApiServer(f"{self.name}-{label}", workdir, self.pki, port,
                           _apiserver_argv(self.artifacts, workdir, self.name, self.pki, self.etcd_url, port,
                                           extra_args))
        self.extra_apiservers.append(server)
        server.start()
        _write_kubeconfig(server.kubeconfig, self.name, server.url, self.pki)
        return server

    def etcd_request(self, method: str, body: dict[str, Any]) -> Any:
        """One call to etcd's v3 JSON gateway (``/v3/<method>``), e.g. ``kv/range`` or ``kv/compaction``."""
        req = urllib.request.Request(f"{self.etcd_url}/v3/{method}", data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def etcd_revision(self) -> int:
        """etcd's current revision: the newest resourceVersion any object of this cluster can have."""
        answer = self.etcd_request("kv/range", {"key": base64.b64encode(b"/").decode(), "limit": 1})
        return int(answer["header"]["revision"])

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd's history up to ``revision`` (default: now); returns it.

        A watch from an older resourceVersion that reaches etcd is then answered 410 Gone.
        """
        revision = self.etcd_revision() if revision is None else revision
        self.etcd_request("kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def stop(self) -> None:
        for server in reversed(self.extra_apiservers):
            server.stop()
        for process in reversed(self.processes):
            process.stop()


class ApiServer:
    """A kube-apiserver that can be stopped and started again on the same port, certificates and etcd.

    Clients keep their kubeconfig across a restart, exactly as with a real control-plane restart.
    """

    def __init__(self, label: str, workdir: Path, pki: ClusterPKI, port: int, argv: list[str]) -> None:
        self.label = label
        self.workdir = workdir
        self.pki = pki
        self.argv = argv
        self.port = port
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = workdir / "kubeconfig"
        self.process: ManagedProcess | None = None
        self.starts = 0

    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(self, timeout: float = 120) -> None:
        """Start (or start again) and wait until ``/readyz`` answers 200."""
        if self.running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(f"kube-apiserver[{self.label}]", self.argv, self.workdir / "kube-apiserver.log")
        self.starts += 1
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))

        def ready() -> bool:
            with urllib.request.urlopen(self.url + "/readyz", context=context, timeout=5) as response:
                return bool(response.status == 200)

        wait_until(ready, timeout, f"kube-apiserver {self.label} to be ready", self.process, interval=0.1)

    def stop(self) -> None:
        """SIGTERM and wait: open watches are cut and new connections are refused until ``start``."""
        if self.process is not None:
            self.process.stop()


def _write_kubeconfig(path: Path, name: str, api_url: str, pki: ClusterPKI) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": api_url, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": f"{name}-admin",
                   "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))


def _wait_or_stop(process: ManagedProcess, check: Callable[[], bool], timeout: float, what: str,
                  interval: float = 0.1) -> None:
    """``wait_until``, stopping ``process`` if it never gets there: a failed start leaves nothing running."""
    try:
        wait_until(check, timeout, what, process, interval)
    except BaseException:
        process.stop()
        raise


def _start_etcd(artifacts: Artifacts, workdir: Path, name: str) -> tuple[ManagedProcess, str]:
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    etcd = ManagedProcess(
        f"etcd[{name}]",
        [
            str(artifacts.etcd),
            "--name", name,
            "--data-dir", str(workdir / "etcd-data"),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}",
            "--unsafe-no-fsync",
            "--log-level", "warn",
        ],
        workdir / "etcd.log",
    )

    def healthy() -> bool:
        with urllib.request.urlopen(client_url + "/health", timeout=2) as response:
            return bool(json.loads(response.read()).get("health") == "true")

    _wait_or_stop(etcd, healthy, 60, f"etcd of {name} to be healthy")
    return etcd, client_url


def _apiserver_argv(artifacts: Artifacts, workdir: Path, name: str, pki: ClusterPKI, etcd_url: str, port: int,
                    extra_args: Sequence[str] = ()) -> list[str]:
    return [
            str(artifacts.kube_apiserver),
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1",
            "--secure-port", str(port),
            "--cert-dir", str(workdir / "apiserver-certs"),
            "--tls-cert-file", str(pki.serving_cert),
            "--tls-private-key-file", str(pki.serving_key),
            "--client-ca-file", str(pki.ca_cert),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", f"https://{name}.mcgw-testbed.invalid",
            "--service-account-key-file", str(pki.sa_public_key),
            "--service-account-signing-key-file", str(pki.sa_private_key),
            "--service-cluster-ip-range", SERVICE_CIDR,
            # The API server's only address is loopback, which an Endpoints object may not hold: publishing
            # the kubernetes Service's endpoints would fail on every attempt.
            "--endpoint-reconciler-type", "none",
            "--profiling=false",
            "--v", "1",
            *extra_args,
    ]


def _start_apiserver(artifacts: Artifacts, workdir: Path, name: str, pki: ClusterPKI,
                     etcd_url: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    api_url = f"https://127.0.0.1:{port}"
    apiserver = ManagedProcess(f"kube-apiserver[{name}]",
                               _apiserver_argv(artifacts, workdir, name, pki, etcd_url, port),
                               workdir / "kube-apiserver.log")
    member_stub = MemberCluster(name, workdir, pki, api_url, etcd_url, workdir / "kubeconfig")

    def ready() -> bool:
        context = member_stub.ssl_context()
        with urllib.request.urlopen(api_url + "/readyz", context=context, timeout=5) as response:
            return bool(response.status == 200)

    _wait_or_stop(apiserver, ready, 120, f"kube-apiserver of {name} to be ready", interval=0.25)
    return apiserver, api_url


def _controller_manager_argv(artifacts: Artifacts, cluster: MemberCluster) -> list[str]:
    return [
        str(artifacts.kube_controller_manager),
        "--kubeconfig", str(cluster.kubeconfig),
        "--controllers", ",".join(CONTROLLERS),
        "--service-account-private-key-file", str(cluster.pki.sa_private_key),
        "--root-ca-file", str(cluster.pki.ca_cert),
        # Every controller acts as the admin identity of the kubeconfig; no per-controller tokens to mint.
        "--use-service-account-credentials=false",
        "--leader-elect=false",
        # Nothing scrapes its metrics or health, so it serves nothing and opens no port.
        "--secure-port", "0",
        "--v", "1",
    ]


def _start_controller_manager(artifacts: Artifacts, cluster: MemberCluster, timeout: float = 60) -> ManagedProcess:
    """Start kube-controller-manager and wait until its controllers act: the ``default`` namespace has its
    ``default`` ServiceAccount, which the API server requires before it admits a pod there."""
    controller_manager = ManagedProcess(f"kube-controller-manager[{cluster.name}]",
                                        _controller_manager_argv(artifacts, cluster),
                                        cluster.workdir / "kube-controller-manager.log")

    def default_service_account() -> bool:
        return cluster.request("GET", "/api/v1/namespaces/default/serviceaccounts/default") is not None

    _wait_or_stop(controller_manager, default_service_account, timeout,
                  f"the controllers of {cluster.name} to create the default ServiceAccount")
    return controller_manager


def _crd_documents(crd_dir: Path) -> list[dict[str, Any]]:
    documents = []
    for manifest in sorted(crd_dir.rglob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                documents.append(doc)
    return documents


def install_crds(cluster: MemberCluster, crd_dirs: list[Path], timeout: float = 60) -> list[str]:
    """Create every CRD found under ``crd_dirs`` and wait until each one is Established."""
    names = []
    collections = []
    for crd_dir in crd_dirs:
        for crd in _crd_documents(crd_dir):
            cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            names.append(crd["metadata"]["name"])
            spec = crd["spec"]
            collections += [f"/apis/{spec['group']}/{v['name']}/{spec['names']['plural']}"
                            for v in spec["versions"] if v.get("served")]

    def established(crd_name: str) -> bool:
        crd = cluster.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}")
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in crd.get("status", {}).get("conditions", []))

    for crd_name in names:
        wait_until(lambda crd_name=crd_name: established(crd_name), timeout, f"CRD {crd_name} Established")  # type: ignore[misc]
    # Established is not enough: until its storage has initialised, the API answers 429 for the resource.
    for path in collections:
        wait_until(lambda path=path: cluster.request("GET", path + "?limit=1") is not None, timeout,  # type: ignore[misc]
                   f"{path} to be served")
    return names


def start_member_cluster(artifacts: Artifacts, workdir: Path, name: str, crd_dirs: list[Path]) -> MemberCluster:
    """Start etcd and kube-apiserver for ``name``, write its kubeconfig, install the CRDs, then start
    kube-controller-manager (after the CRDs, so garbage collection knows every resource from the start)."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    pki = generate(workdir / "pki", name)
    processes: list[ManagedProcess] = []
    try:
        etcd, etcd_url = _start_etcd(artifacts, workdir, name)
        processes.append(etcd)
        apiserver, api_url = _start_apiserver(artifacts, workdir, name, pki, etcd_url)
        processes.append(apiserver)
        cluster = MemberCluster(name, workdir, pki, api_url, etcd_url, workdir / "kubeconfig", processes,
                                artifacts=artifacts)
        _write_kubeconfig(cluster.kubeconfig, name, api_url, pki)
        install_crds(cluster, crd_dirs)
        processes.append(_start_controller_manager(artifacts, cluster))
    except BaseException:
        for process in reversed(processes):
            process.stop()
        raise
    cluster.start_seconds = time.monotonic() - started
    return cluster
