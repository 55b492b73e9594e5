"""The pod runner behaves like a kubelet: bare Pods become Running and Ready on their own address, see
their env and volumes where the spec puts them, are gated by readiness probes, log through ``pods/log``,
restart, finish, run their preStop hooks within the grace period when deleted, and go away completely."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.clusterset import _echo_basic, node_name

NS = "podrunner-e2e"
ECHO_BASIC = "registry.k8s.io/gateway-api/echo-basic:v1.5.1"

# A test program, shipped in a ConfigMap and run by the mcgw-testbed/python image.
APP = r'''
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

ready = {"ok": os.environ.get("START_READY") == "1"}
NOTES = os.environ.get("NOTES")  # a file (on a hostPath) where the program notes when what happened


def note(text):
    if NOTES:
        with open(NOTES, "a") as f:
            f.write(f"{time.time():.3f} {os.environ.get('POD_NAME')} {text}\n")


def on_term(*_):
    note("SIGTERM")
    if os.environ.get("IGNORE_TERM") == "1":
        print("ignoring SIGTERM", flush=True)
        return
    print("terminating", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print(f"boot {os.environ.get('POD_NAME')}", flush=True)
print("a line on stderr", file=sys.stderr, flush=True)

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/ready":
            return self.answer(200 if ready["ok"] else 503, ready)
        if url.path == "/make-ready":
            ready["ok"] = True
            return self.answer(200, ready)
        if url.path == "/say":
            print(query["text"], flush=True)
            return self.answer(200, {})
        if url.path == "/note":
            note(query["text"])
            return self.answer(200, {})
        if url.path == "/env":
            return self.answer(200, dict(os.environ))
        if url.path == "/file":
            path = query["path"]
            try:
                with open(path, "rb") as f:
                    content = f.read().decode(errors="replace")
                return self.answer(200, {"content": content, "mode": os.stat(path).st_mode & 0o777})
            except OSError as error:
                return self.answer(404, {"error": str(error)})
        if url.path == "/ls":
            try:
                return self.answer(200, sorted(os.listdir(query["path"])))
            except OSError as error:
                return self.answer(404, {"error": str(error)})
        if url.path == "/write":
            try:
                with open(query["path"], "w") as f:
                    f.write("x")
                return self.answer(200, {"written": True})
            except OSError as error:
                return self.answer(200, {"written": False, "error": str(error)})
        if url.path == "/connect":
            import socket
            try:
                socket.create_connection(("127.0.0.1", int(query["port"])), timeout=3).close()
                return self.answer(200, {"connected": True})
            except OSError as error:
                return self.answer(200, {"connected": False, "error": str(error)})
        if url.path == "/whoami-api":
            # In-cluster config as client libraries read it: the kubernetes Service's env, the token, the CA.
            import ssl, urllib.request
            account = "/var/run/secrets/kubernetes.io/serviceaccount"
            context = ssl.create_default_context(cafile=f"{account}/ca.crt")
            token = open(f"{account}/token").read()
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
            review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
            request = urllib.request.Request(
                f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews", data=review,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return self.answer(200, json.loads(response.read()))
        if url.path == "/whoami":
            import socket
            return self.answer(200, {"hostname": socket.gethostname(), "pid": os.getpid(), "argv": sys.argv})
        return self.answer(404, {"path": url.path})

HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
'''


def _wait(check: Callable[[], Any], what: str, within: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError, KeyError, ValueError):
            last = check()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


def _create(cluster: MemberCluster, path: str, body: dict[str, Any]) -> bool:
    """Create, or find it already there (409); True either way."""
    try:
        cluster.request("POST", path, body)
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise
    return True


def _raw(cluster: MemberCluster, path: str) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(cluster.api_url + path), context=cluster.ssl_context(),
                                timeout=30) as response:
        return bytes(response.read())


def _get(url: str, timeout: float = 5) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _pod(cluster: MemberCluster, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.request("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
    return result


def _condition(pod: dict[str, Any], kind: str) -> str:
    return next((c["status"] for c in pod.get("status", {}).get("conditions", []) if c["type"] == kind), "")


def _ready(cluster: MemberCluster, name: str) -> dict[str, Any] | None:
    pod = _pod(cluster, name)
    return pod if _condition(pod, "Ready") == "True" else None


def _gone(cluster: MemberCluster, name: str) -> bool:
    try:
        _pod(cluster, name)
    except urllib.error.HTTPError as error:
        return error.code == 404
    return False


def _netns_of(uid: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip() and line.split()[0].endswith(uid[:8])]


def _app_pod(name: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "mcgw-testbed/python:3", "args": ["/opt/app/server.py"],
                                 "env": [{"name": "POD_NAME",
                                          "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                         *spec.pop("env", [])],
                                 "volumeMounts": [{"name": "app", "mountPath": "/opt/app"},
                                                  *spec.pop("mounts", [])]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": name, **spec.pop("labels", {})}},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [container],
                     "volumes": [{"name": "app", "configMap": {"name": "app"}}, *spec.pop("volumes", [])],
                     **spec}}


@pytest.fixture(scope="module")
def east(clusterset: ClusterSet) -> Iterator[MemberCluster]:
    """East with the test namespace, its default ServiceAccount and the test program's ConfigMap."""
    cluster = clusterset.clusters["east"]
    _create(cluster, "/api/v1/namespaces", {"metadata": {"name": NS}})
    # kube-controller-manager would make it; without one the test does, as the pods need it to be admitted.
    _wait(lambda: _create(cluster, f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "default"}}),
          "the default ServiceAccount")
    _create(cluster, f"/api/v1/namespaces/{NS}/configmaps",
            {"metadata": {"name": "app"}, "data": {"server.py": APP}})
    yield cluster
    with contextlib.suppress(urllib.error.HTTPError):
        cluster.request("DELETE", f"/api/v1/namespaces/{NS}/pods")


def _echo_pod(name: str) -> dict[str, Any]:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    container: dict[str, Any] = {"name": "echo", "image": ECHO_BASIC, "env": env}
    if _echo_basic() is None:  # echo-basic not built: the repo's echo answers the same keys on the same port
        container["image"] = "mcgw-testbed/echo:1"
        container["args"] = ["--host", "0.0.0.0", "--port", "3000", "--cluster", "east",
                             "--namespace", "$(NAMESPACE)", "--pod", "$(POD_NAME)"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]}}


def test_bare_echo_pod_becomes_ready_on_its_own_address(clusterset: ClusterSet, east: MemberCluster) -> None:
    started = time.monotonic()
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", _echo_pod("echo-a"))
    pod = _wait(lambda: _ready(east, "echo-a"), "echo-a to be Ready")
    ready_after = time.monotonic() - started
    status = pod["status"]
    assert status["phase"] == "Running"
    assert pod["spec"]["nodeName"] == node_name("east")
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network("198.18.0.0/15")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == clusterset.net("east").host_address
    assert {c["type"] for c in status["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready",
                                                         "PodReadyToStartContainers"}
    (container,) = status["containerStatuses"]
    assert container["ready"]
    assert container["started"]
    assert "running" in container["state"]
    code, answer = _wait(lambda: _get(f"http://{status['podIP']}:3000/hello"), "echo-a to answer")
    assert code == 200
    assert answer["namespace"] == NS
    assert answer["pod"] == "echo-a"
    print(f"\n[podrunner] echo pod Ready {ready_after:.2f}s after creation")


def test_two_pods_on_the_same_port_both_answer(east: MemberCluster) -> None:
    for name in ("echo-b", "echo-c"):
        east.request("POST", f"/api/v1/namespaces/{NS}/pods", _echo_pod(name))
    addresses = {name: _wait(lambda name=name: _ready(east, name), f"{name} Ready")["status"]["podIP"]  # type: ignore[misc]
                 for name in ("echo-b", "echo-c")}
    assert addresses["echo-b"] != addresses["echo-c"]
    for name, address in addresses.items():
        assert _get(f"http://{address}:3000/")[1]["pod"] == name


def test_env_and_volumes_are_where_the_spec_says(east: MemberCluster) -> None:
    _create(east, f"/api/v1/namespaces/{NS}/configmaps",
            {"metadata": {"name": "settings"}, "data": {"color": "blue", "size": "10", "config.yaml": "a: 1\n"}})
    _create(east, f"/api/v1/namespaces/{NS}/secrets",
            {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret", "tls.crt": "CERT", "tls.key": "KEY"}})
    env = [
        {"name": "PORT", "value": "8080"},
        {"name": "GREETING", "value": "hello $(POD_NAME) $$(NOT_EXPANDED) $(UNDEFINED)"},
        {"name": "MY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MY_SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "MY_TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "ABSENT", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "x", "optional": True}}},
    ]
    pod = _app_pod(
        "env-volumes", env=env, labels={"tier": "gold"},
        container={"envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
                   "args": ["/opt/app/server.py", "--color=$(COLOR)"]},
        mounts=[{"name": "tls", "mountPath": "/etc/secret-volume"},
                {"name": "settings", "mountPath": "/etc/podrunner-e2e/config.yaml", "subPath": "config.yaml"},
                {"name": "picked", "mountPath": "/etc/podrunner-e2e/picked"},
                {"name": "scratch", "mountPath": "/opt/podrunner-e2e-scratch"}],
        volumes=[{"name": "tls", "secret": {"secretName": "creds", "defaultMode": 0o400,
                                            "items": [{"key": "tls.crt", "path": "crt"},
                                                      {"key": "tls.key", "path": "key"}]}},
                 {"name": "settings", "configMap": {"name": "settings"}},
                 {"name": "picked", "configMap": {"name": "settings", "items": [{"key": "size", "path": "sub/size"}],
                                                  "defaultMode": 0o640}},
                 {"name": "scratch", "emptyDir": {}}])
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    ip = _wait(lambda: _ready(east, "env-volumes"), "env-volumes Ready")["status"]["podIP"]
    base = f"http://{ip}:8080"
    _, environment = _wait(lambda: _get(f"{base}/env"), "env-volumes to answer")  # Ready: running, maybe not bound
    uid = _pod(east, "env-volumes")["metadata"]["uid"]
    assert environment["GREETING"] == "hello env-volumes $(NOT_EXPANDED) $(UNDEFINED)"
    assert environment["MY_NAMESPACE"] == NS
    assert environment["MY_UID"] == uid
    assert environment["MY_IP"] == ip
    assert environment["MY_NODE"] == node_name("east")
    assert environment["MY_SA"] == "default"
    assert environment["MY_TIER"] == "gold"
    assert environment["COLOR"] == "blue"
    assert environment["PASSWORD"] == "s3cret"
    assert "ABSENT" not in environment
    assert environment["CM_size"] == "10"
    assert environment["HOSTNAME"] == "env-volumes"
    assert environment["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert _get(f"{base}/whoami")[1]["argv"][1:] == ["--color=blue"]
    assert _get(f"{base}/whoami")[1]["hostname"] == "env-volumes"
    assert _get(f"{base}/file?path=/etc/secret-volume/crt")[1] == {"content": "CERT", "mode": 0o400}
    assert _get(f"{base}/file?path=/etc/secret-volume/key")[1]["content"] == "KEY"
    assert _get(f"{base}/file?path=/etc/podrunner-e2e/config.yaml")[1]["content"] == "a: 1\n"
    assert _get(f"{base}/file?path=/etc/podrunner-e2e/picked/sub/size")[1] == {"content": "10", "mode": 0o640}
    assert _get(f"{base}/write?path=/etc/secret-volume/new")[1]["written"] is False  # Secret volumes are read-only
    assert _get(f"{base}/write?path=/opt/podrunner-e2e-scratch/new")[1]["written"] is True
    # The ServiceAccount admission plugin's projected volume: a token, the cluster CA, the namespace.
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert set(_get(f"{base}/ls?path={account}")[1]) >= {"token", "ca.crt", "namespace"}
    assert _get(f"{base}/file?path={account}/namespace")[1]["content"] == NS
    token = _get(f"{base}/file?path={account}/token")[1]["content"]
    review = east.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{NS}:default"
    # ... and the API server is reachable from inside the pod, at the address its certificate names.
    seen = _get(f"{base}/whoami-api")[1]
    assert seen["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:default"
    # Mount points that do not exist on the host were made in the container's own view only.
    assert not Path("/etc/secret-volume").exists()
    assert not Path("/etc/podrunner-e2e").exists()
    assert not Path("/opt/podrunner-e2e-scratch").exists()


def test_read_only_root_and_every_members_api_server(clusterset: ClusterSet, east: MemberCluster) -> None:
    """What charts/mcgw's pod asks for: a read-only root filesystem with an emptyDir at /tmp, the security
    context's users (accepted; the process still runs as root, docs/testbed.md), and every member's API
    server reachable from inside the pod at the address the host uses."""
    host_dir = Path("/var/tmp")  # writable on the host, so a refusal below is the container's read-only root
    pod = _app_pod(
        "read-only", env=[{"name": "START_READY", "value": "1"}],
        securityContext={"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
        container={"securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                       "capabilities": {"drop": ["ALL"]}}},
        mounts=[{"name": "tmp", "mountPath": "/tmp"}], volumes=[{"name": "tmp", "emptyDir": {}}])
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    ip = _wait(lambda: _ready(east, "read-only"), "read-only Ready")["status"]["podIP"]
    base = f"http://{ip}:8080"
    _, written = _wait(lambda: _get(f"{base}/write?path=/tmp/scratch"), "read-only to answer")  # Ready: running
    assert written["written"] is True
    refused = _get(f"{base}/write?path={host_dir}/podrunner-e2e-read-only")[1]
    assert (refused["written"], "Read-only file system" in refused["error"]) == (False, True), refused
    assert not (host_dir / "podrunner-e2e-read-only").exists()
    assert _get(f"{base}/write?path=/opt/app/new")[1]["written"] is False
    for name, member in clusterset.clusters.items():
        port = urllib.parse.urlsplit(member.api_url).port
        assert _get(f"{base}/connect?port={port}")[1] == {"connected": True}, name


def test_readiness_probe_gates_ready(east: MemberCluster) -> None:
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    pod = _app_pod("gated", container={"readinessProbe": probe, "ports": [{"name": "http", "containerPort": 8080}]})
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    running = _wait(lambda: (p := _pod(east, "gated"))["status"].get("phase") == "Running" and
                    _get(f"http://{p['status']['podIP']}:8080/ready")[0] == 503 and p, "gated to run")
    ip = running["status"]["podIP"]
    time.sleep(2.5)  # a few probe periods: still not Ready
    pod_now = _pod(east, "gated")
    assert _condition(pod_now, "Ready") == "False"
    assert _condition(pod_now, "ContainersReady") == "False"
    assert pod_now["status"]["containerStatuses"][0]["started"] is True
    assert _get(f"http://{ip}:8080/make-ready")[0] == 200
    _wait(lambda: _ready(east, "gated"), "gated to become Ready once its probe passes", within=10)


def test_pod_log_through_the_api_server(east: MemberCluster) -> None:
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", _app_pod("talker", env=[{"name": "START_READY",
                                                                                  "value": "1"}]))
    ip = _wait(lambda: _ready(east, "talker"), "talker Ready")["status"]["podIP"]
    path = f"/api/v1/namespaces/{NS}/pods/talker/log"
    _wait(lambda: b"boot talker" in _raw(east, path), "the boot line in pods/log")
    assert b"a line on stderr" in _raw(east, path)
    # sinceTime has seconds precision: say something in a later second than the boot line.
    time.sleep(1.1)
    since = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    time.sleep(max(0.0, since.timestamp() - time.time()) + 0.05)
    _wait(lambda: _get(f"http://{ip}:8080/say?text=later-line")[0] == 200, "talker to take the line")
    query = urllib.parse.urlencode({"sinceTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "container": "app"})
    recent = _wait(lambda: (body := _raw(east, f"{path}?{query}")) and b"later-line" in body and body,
                   "the later line with sinceTime")
    assert b"boot talker" not in recent
    assert _raw(east, f"{path}?tailLines=1").strip() == b"later-line"
    stamped = _raw(east, f"{path}?tailLines=1&timestamps=true").decode().strip()
    stamp, text = stamped.split(" ", 1)
    assert text == "later-line"
    assert dt.datetime.fromisoformat(stamp.replace("Z", "+00:00").split(".")[0] + "+00:00") >= since


def test_unknown_image_stays_waiting_with_a_pull_error(east: MemberCluster) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-such-image", "namespace": NS},
           "spec": {"containers": [{"name": "c", "image": "example.invalid/nothing:1"}]}}
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)

    def waiting_reason() -> str:
        statuses = _pod(east, "no-such-image")["status"].get("containerStatuses", [])
        return str(statuses[0]["state"].get("waiting", {}).get("reason", "")) if statuses else ""

    assert _wait(lambda: waiting_reason() in ("ErrImagePull", "ImagePullBackOff") and waiting_reason(),
                 "a pull error") in ("ErrImagePull", "ImagePullBackOff")
    pod_now = _pod(east, "no-such-image")
    assert pod_now["status"]["phase"] == "Pending"
    assert _condition(pod_now, "Ready") == "False"


def test_crashing_container_restarts_and_a_finished_pod_succeeds(east: MemberCluster) -> None:
    crash = _app_pod("crasher", container={"command": ["python3", "-c", "import sys; print('bye'); sys.exit(3)"],
                                           "args": []})
    work = {"name": "work", "mountPath": "/opt/finisher-scratch"}
    prepare = {"name": "prepare", "image": "mcgw-testbed/python:3", "volumeMounts": [work],
               "command": ["python3", "-c", "open('/opt/finisher-scratch/note', 'w').write('done by init')"]}
    done = _app_pod("finisher", restartPolicy="Never", initContainers=[prepare], mounts=[work],
                    volumes=[{"name": "work", "emptyDir": {}}],
                    container={"command": ["python3", "-c", "print(open('/opt/finisher-scratch/note').read())"],
                               "args": []})
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", crash)
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", done)

    def restarted() -> dict[str, Any] | None:
        statuses = _pod(east, "crasher")["status"].get("containerStatuses", [])
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 and statuses[0]["lastState"] else None

    status = _wait(restarted, "crasher to restart")
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    finished = _wait(lambda: (p := _pod(east, "finisher"))["status"].get("phase") == "Succeeded" and p,
                     "finisher to succeed")
    assert finished["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert finished["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert _condition(finished, "Initialized") == "True"
    assert _netns_of(finished["metadata"]["uid"]) == []  # a finished pod's sandbox is gone
    assert b"done by init" in _raw(east, f"/api/v1/namespaces/{NS}/pods/finisher/log?container=app")


def test_deletion_stops_the_process_and_removes_pod_and_namespace(east: MemberCluster) -> None:
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", _app_pod("doomed", env=[{"name": "START_READY",
                                                                                  "value": "1"}]))
    pod = _wait(lambda: _ready(east, "doomed"), "doomed Ready")
    ip, uid = pod["status"]["podIP"], pod["metadata"]["uid"]
    assert len(_netns_of(uid)) == 1
    pid = _wait(lambda: _get(f"http://{ip}:8080/whoami"), "doomed to answer")[1]["pid"]
    assert pid == 1  # PID 1 of its own PID namespace, as in a container
    started = time.monotonic()
    east.request("DELETE", f"/api/v1/namespaces/{NS}/pods/doomed")
    _wait(lambda: _gone(east, "doomed"), "doomed to be deleted", within=30)
    deleted_after = time.monotonic() - started
    assert deleted_after < 5, "the program exits on SIGTERM: no need to wait for the grace period"
    assert _netns_of(uid) == []
    with pytest.raises(OSError, match=r"refused|unreachable|timed out|No route"):
        urllib.request.urlopen(f"http://{ip}:8080/whoami", timeout=1)
    print(f"\n[podrunner] pod deleted {deleted_after:.2f}s after the DELETE")


def _notes(path: Path) -> dict[str, float]:
    """What the test program noted (``NOTES``), by ``<pod> <what>``: the wall-clock time it happened."""
    found: dict[str, float] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        stamp, _, what = line.partition(" ")
        found.setdefault(what, float(stamp))
    return found


def _noting_pod(name: str, notes: Path, **spec: Any) -> dict[str, Any]:
    """An app pod, Ready at once, that notes its SIGTERM (and what its hooks say) in ``notes``."""
    env = [{"name": "START_READY", "value": "1"}, {"name": "NOTES", "value": "/notes/notes"}, *spec.pop("env", [])]
    return _app_pod(name, env=env, mounts=[{"name": "notes", "mountPath": "/notes"}],
                    volumes=[{"name": "notes", "hostPath": {"path": str(notes.parent), "type": "Directory"}}], **spec)


def _pod_events(cluster: MemberCluster, name: str, version: str, until: float) -> list[dict[str, Any]]:
    """The watch events of pod ``name`` from ``version`` until it is deleted (what ``kubectl get -w`` shows)."""
    query = urllib.parse.urlencode({"watch": "1", "resourceVersion": version, "timeoutSeconds": str(int(until)),
                                    "fieldSelector": f"metadata.name={name}"})
    request = urllib.request.Request(f"{cluster.api_url}/api/v1/namespaces/{NS}/pods?{query}")
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(request, context=cluster.ssl_context(), timeout=until + 5) as response:
        for line in response:
            events.append(json.loads(line))
            if events[-1]["type"] == "DELETED":
                break
    return events


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5):
            return True
    except OSError:
        return False


def test_pre_stop_sleep_keeps_a_deleted_pod_serving_until_sigterm(east: MemberCluster, tmp_path: Path) -> None:
    """What a Deployment's Envoy gets (mcgw's drainSeconds): deleted, the pod answers on for its preStop sleep
    while its endpoint is terminating (not ready, still serving), then gets SIGTERM and goes."""
    notes = tmp_path / "notes"
    probe = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}
    east.request("POST", f"/api/v1/namespaces/{NS}/services", {
        "metadata": {"name": "drainer"}, "spec": {"selector": {"app": "drainer"}, "ports": [{"port": 8080}]}})
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", _noting_pod(
        "drainer", notes, terminationGracePeriodSeconds=10,
        container={"readinessProbe": probe, "lifecycle": {"preStop": {"sleep": {"seconds": 3}}}}))
    ip = _wait(lambda: _ready(east, "drainer"), "drainer Ready")["status"]["podIP"]
    slices = (f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
              "?labelSelector=kubernetes.io%2Fservice-name%3Ddrainer")

    def conditions() -> dict[str, Any] | None:
        endpoints = [e for item in east.request("GET", slices)["items"] for e in item.get("endpoints") or []
                     if ip in e["addresses"]]
        return endpoints[0]["conditions"] if endpoints else None

    _wait(lambda: (conditions() or {}).get("ready") is True, "drainer's endpoint to be ready")
    url = f"http://{ip}:8080/whoami"
    deleted_wall, deleted = time.time(), time.monotonic()
    east.request("DELETE", f"/api/v1/namespaces/{NS}/pods/drainer")
    answered, seen_conditions, during = 0.0, None, None
    while time.monotonic() - deleted < 20 and not _gone(east, "drainer"):
        if _serving(url):
            answered = time.monotonic() - deleted
        if seen_conditions is None and (found := conditions()) and found.get("terminating"):
            seen_conditions = found
        if during is None and time.monotonic() - deleted > 1:
            during = _pod(east, "drainer")
        time.sleep(0.1)
    gone_after = time.monotonic() - deleted
    sigterm = _notes(notes)["drainer SIGTERM"] - deleted_wall
    print(f"\n[podrunner] preStop sleep 3s: answered until {answered:.2f}s after the DELETE, SIGTERM at "
          f"{sigterm:.2f}s, pod gone at {gone_after:.2f}s")
    assert 2.9 <= sigterm < 4.5, "SIGTERM comes once the preStop sleep is over"
    assert answered >= 2.7, "the pod serves through its preStop sleep"
    assert gone_after < 8, "the program exits on SIGTERM: no need to wait for the grace period"
    assert seen_conditions == {"ready": False, "serving": True, "terminating": True}
    assert during is not None
    assert during["metadata"].get("deletionTimestamp")
    (status,) = during["status"]["containerStatuses"]
    assert "running" in status["state"]
    assert status["ready"] is True  # readiness is still probed
    east.request("DELETE", f"/api/v1/namespaces/{NS}/services/drainer")


def test_grace_period_expiry_kills_a_container_that_ignores_sigterm(east: MemberCluster, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", _noting_pod(
        "stubborn", notes, terminationGracePeriodSeconds=3, env=[{"name": "IGNORE_TERM", "value": "1"}],
        container={"lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}))
    pod = _wait(lambda: _ready(east, "stubborn"), "stubborn Ready")
    url = f"http://{pod['status']['podIP']}:8080/whoami"
    _wait(lambda: _serving(url), "stubborn to answer")
    deleted_wall, deleted = time.time(), time.monotonic()
    east.request("DELETE", f"/api/v1/namespaces/{NS}/pods/stubborn")
    answered = 0.0
    while time.monotonic() - deleted < 10 and not _gone(east, "stubborn"):
        if _serving(url):
            answered = time.monotonic() - deleted
        time.sleep(0.1)
    gone_after = time.monotonic() - deleted
    events = _pod_events(east, "stubborn", pod["metadata"]["resourceVersion"], 10)
    sigterm = _notes(notes)["stubborn SIGTERM"] - deleted_wall
    print(f"\n[podrunner] grace 3s, preStop sleep 1s, SIGTERM ignored: SIGTERM at {sigterm:.2f}s, answered until "
          f"{answered:.2f}s, pod gone at {gone_after:.2f}s")
    assert 0.9 <= sigterm < 2.5
    assert answered >= 2.2, "SIGTERM ignored: the program answers until the grace period ends"
    assert gone_after < 6
    final = next(e["object"] for e in reversed(events) if e["type"] == "MODIFIED")
    (status,) = final["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 137  # SIGKILL
    assert final["status"]["phase"] == "Failed"


def test_exec_and_http_pre_stop_hooks_run_in_each_container(east: MemberCluster, tmp_path: Path) -> None:
    """Every container's hook, side by side: exec inside the container (its mounts, its env), httpGet to the
    pod's address from the node. Each one's SIGTERM follows its own hook."""
    notes = tmp_path / "notes"
    write = ("import os, time; time.sleep(1); open('/notes/notes', 'a').write("
             "f\"{time.time():.3f} {os.environ['POD_NAME']} exec-hook\\n\")")
    pod = _noting_pod("hooked", notes, container={"lifecycle": {"preStop": {"exec": {"command": ["python3", "-c",
                                                                                                  write]}}}})
    second = json.loads(json.dumps(pod["spec"]["containers"][0]))
    second["name"] = "web"
    second["env"].append({"name": "PORT", "value": "8081"})
    second["lifecycle"] = {"preStop": {"httpGet": {"path": "/note?text=http-hook", "port": 8081}}}
    pod["spec"]["containers"].append(second)
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    ip = _wait(lambda: _ready(east, "hooked"), "hooked Ready")["status"]["podIP"]
    for port in (8080, 8081):  # Ready without probes means started, not yet listening
        _wait(lambda port=port: _serving(f"http://{ip}:{port}/whoami"), f"hooked to answer on {port}")  # type: ignore[misc]
    east.request("DELETE", f"/api/v1/namespaces/{NS}/pods/hooked")
    _wait(lambda: _gone(east, "hooked"), "hooked to be deleted", within=30)
    seen = _notes(notes)
    assert set(seen) == {"hooked exec-hook", "hooked http-hook", "hooked SIGTERM"}, seen
    lines = [line.split(" ", 1)[1] for line in notes.read_text().splitlines()]
    assert lines.count("hooked SIGTERM") == 2
    # The http hook answers at once, so the web container's SIGTERM comes before the exec hook is done.
    assert lines.index("hooked http-hook") < lines.index("hooked SIGTERM") < lines.index("hooked exec-hook")
    assert lines[-1] == "hooked SIGTERM"


def test_pods_of_another_node_are_left_alone(east: MemberCluster) -> None:
    pod = _app_pod("elsewhere", nodeName="some-other-node")
    east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    time.sleep(2)
    pod_now = _pod(east, "elsewhere")
    assert pod_now["spec"]["nodeName"] == "some-other-node"
    assert pod_now.get("status", {}).get("phase") == "Pending"
    assert "containerStatuses" not in pod_now.get("status", {})
    east.request("DELETE", f"/api/v1/namespaces/{NS}/pods/elsewhere?gracePeriodSeconds=0")


ENVOY_BOOTSTRAP = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 19901}}
static_resources:
  listeners:
  - name: hello
    address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hello
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "envoy in a pod"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"""


def test_envoy_pods_with_their_bootstrap_at_etc_envoy(east: MemberCluster) -> None:
    """Two Envoys with the same admin port and base id, as mcgw's gateway Deployments run them."""
    _create(east, f"/api/v1/namespaces/{NS}/configmaps",
            {"metadata": {"name": "envoy-bootstrap"}, "data": {"bootstrap.yaml": ENVOY_BOOTSTRAP}})
    mounts = {"envoy-dir": {"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": True},
              "envoy-file": {"name": "bootstrap", "mountPath": "/etc/envoy/bootstrap.yaml",
                             "subPath": "bootstrap.yaml"}}
    for name, mount in mounts.items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
               "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                   "name": "envoy", "image": "envoyproxy/envoy:v1.40.0",
                   "args": ["--config-path", "/etc/envoy/bootstrap.yaml", "--service-node", "$(POD_NAME)",
                            "--service-cluster", "east", "--log-level", "info"],
                   "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                   "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                   "volumeMounts": [mount]}],
                   "volumes": [{"name": "bootstrap", "configMap": {"name": "envoy-bootstrap"}}]}}
        east.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    for name in mounts:
        ip = _wait(lambda name=name: _ready(east, name), f"{name} Ready")["status"]["podIP"]  # type: ignore[misc]
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
            assert response.read() == b"envoy in a pod"
        assert b"starting main dispatch loop" in _raw(east, f"/api/v1/namespaces/{NS}/pods/{name}/log")
    assert not Path("/etc/envoy").exists()


def test_runner_memory(clusterset: ClusterSet, east: MemberCluster) -> None:
    """Not a limit, a figure: the runner's resident memory with this module's pods running."""
    pods = east.request("GET", f"/api/v1/namespaces/{NS}/pods")["items"]
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
    status = Path(f"/proc/{clusterset.podrunners['east'].pid}/status").read_text()
    rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    print(f"\n[podrunner] east's runner: {int(rss) / 1024:.1f} MiB resident with {len(running)} running pods")
    assert running
