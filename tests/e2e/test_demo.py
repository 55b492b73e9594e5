"""`make demo` as a user runs it: started as a subprocess, its printed URLs curled and the answers checked
against what it says they should show, then Ctrl-C leaves nothing listening."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from mcgw.app import grpc_echo
from mcgw.app.demo import TCP_PORT, _request, _service

REPO = Path(__file__).resolve().parents[2]
CURL = re.compile(r"^\s+curl -s(?:i)? (?:-H '(?P<header>[^:]+): (?P<value>[^']+)' )?(?P<url>http://\S+)"
                  r"\s+# (?P<expect>.+)$")
GRPC_CALL = re.compile(r"^\s+\.venv/bin/python -m mcgw\.app\.grpc_echo --call (?P<target>\S+) (?P<method>\S+)"
                       r"\s+# an answer from cluster (?P<cluster>\w+)$")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def test_make_demo_prints_urls_that_answer_as_it_says() -> None:
    process = subprocess.Popen(["make", "--no-print-directory", "demo"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Edit the files under"):
                break
        output = "\n".join(lines)
        assert lines, "make demo printed nothing"
        assert lines[-1].startswith("Edit the files under"), output
        assert "UNEXPECTED" not in output, output
        curls = [m for m in map(CURL.match, lines) if m]
        assert len(curls) >= 12, output  # four for each of the three clusters, plus /api/status
        gateways = set()
        for match in curls:
            url, expect = match["url"], match["expect"]
            if url.endswith("/api/status"):
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert b'"clusters"' in response.read()
                continue
            headers = {match["header"]: match["value"]} if match["header"] else {}
            answer = _request(url, headers)
            gateways.add(url.split("/")[2])
            if expect == "404":
                assert answer.status == 404, (url, answer)
                continue
            cluster = re.search(r"cluster (\w+)", expect)
            assert cluster, expect
            assert (answer.status, answer.cluster) == (200, cluster[1]), (url, expect, answer)
            if url.split("/")[2].endswith(f":{TCP_PORT}"):  # the TCPRoute's port: curl speaks HTTP on a TCP connection
                assert _service(answer.pod) == "ledger", (url, answer)
            elif "service store-v2" in expect:
                assert (_service(answer.pod), answer.served_by) == ("store-v2", "store-v2"), (url, answer)
            else:
                assert _service(answer.pod) in ("store", "store-v2"), (url, answer)
        assert len({gateway.split(":")[0] for gateway in gateways}) == 3, "each cluster's gateway has its address"
        calls = [m for m in map(GRPC_CALL.match, lines) if m]
        assert len(calls) == 3, output  # one gRPC call for each cluster's gateway
        for match in calls:
            answer = json.loads(grpc_echo.call(match["target"], match["method"]))
            assert (answer["cluster"], answer["pod"]) == (match["cluster"], "greeter-0"), (match[0], answer)
            gateways.add(match["target"])
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert "stopped every Envoy" in rest, rest
    for gateway in gateways:
        host, port = gateway.split(":")
        assert not _listening(host, int(port)), f"{gateway} still listening after Ctrl-C"
