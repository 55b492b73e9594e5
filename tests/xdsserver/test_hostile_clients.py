"""Probes of what an unauthenticated or hostile xDS client can make the server hold or do.

Each probe is bounded in count and time and talks to loopback only. Figures (RSS, times, counts) are
printed, not asserted against the clock; the assertions are the bounds themselves.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from prometheus_client import generate_latest

from tests.xdsserver.conftest import NODE, StartServer, Stream, XdsHarness, names_of
from xdsserver import CLUSTER, ENDPOINT, PUSH_ORDER, XdsLimits, excerpt, short_type

KNOWN_LABELS = {short_type(t) for t in PUSH_ORDER} | {"unknown"}
PEM = ("-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" + "Q" * 600
       + "\\n-----END PRIVATE KEY-----")


def rss_mb() -> float:
    """This process's resident set, from /proc, after collecting garbage and handing freed heap back."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def refusal(stream: Stream, within: float = 15.0) -> grpc.aio.AioRpcError:
    """The error that ends ``stream``, skipping responses before it."""
    deadline = time.monotonic() + within
    while True:
        try:
            await stream.recv(within=max(0.1, deadline - time.monotonic()))
        except grpc.aio.AioRpcError as error:
            return error


def type_label_values(xds: XdsHarness) -> set[str]:
    exposition = generate_latest(xds.server.metrics.registry).decode()
    return set(re.findall(r'\btype="([^"]*)"', exposition))


# The server of the memory probe runs in its own process, so that only its memory is measured (a cancelled
# grpc.aio client call can keep its last request alive). Each line on stdin is answered with its RSS in kB
# and how many streams and watches it still holds.
SERVER = """
import asyncio, ctypes, gc, re, sys
from tests.xdsserver.conftest import GROUP
from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import Snapshot, SnapshotCache, XdsServer

async def main():
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources()))
    server = XdsServer(cache)
    print(await server.start("127.0.0.1:0"), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        rss = re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
        print(rss, len(server.status.nodes()), sum(map(len, cache._watches.values())), flush=True)
    await server.stop(0)

asyncio.run(main())
"""


async def test_name_lists_past_the_limit_are_refused_and_memory_returns() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, cwd=Path(__file__).parents[2], stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def server_state() -> tuple[float, int, int]:
        """The server's RSS in MB, its open streams and its watches."""
        stdin.write(b"\n")
        rss, streams, watches = (await asyncio.wait_for(stdout.readline(), 10)).split()
        return int(rss) / 1024, int(streams), int(watches)

    port = int(await asyncio.wait_for(stdout.readline(), 30))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    huge = [f"made-up-cluster-{i:06d}" for i in range(100_000)]
    at_limit = [[f"s{s}-{i:05d}" for i in range(9_999)] + ["c1"] for s in range(10)]

    async def refused_huge() -> None:
        stream = Stream(channel, delta=False)
        stream.send(node=NODE, type_url=ENDPOINT, resource_names=huge)
        error = await refusal(stream)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 10000" in str(error.details())
        stream.close()

    try:
        cold = (await server_state())[0]
        for _ in range(3):  # the first 2 MB messages raise gRPC's and the allocator's high-water mark once
            await refused_huge()
        before = (await server_state())[0]
        started = time.monotonic()
        for _ in range(30):
            await refused_huge()
        for names in at_limit:  # accepted: made-up names are answered with what exists, and never cached
            stream = Stream(channel, delta=False)
            stream.send(node=NODE, type_url=ENDPOINT, resource_names=names)
            assert names_of(await stream.recv()) == ["c1"]
            stream.close()
        delta = Stream(channel, delta=True)  # nor may a delta stream collect names over many requests
        delta.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=at_limit[0])
        await delta.recv()
        delta.send(type_url=ENDPOINT, resource_names_subscribe=at_limit[1])
        assert (await refusal(delta)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        delta.close()
        elapsed = time.monotonic() - started

        deadline = time.monotonic() + 10
        while (state := await server_state())[1:] != (0, 0):
            assert time.monotonic() < deadline, f"streams or watches left: {state[1:]}"
            await asyncio.sleep(0.1)
        after = state[0]
        print(f"\nserver RSS: {cold:.1f} MB at start, {before:.1f} after 3 warm-up requests, {after:.1f} after "
              f"30 requests x 100,000 names, 10 x 10,000 and a delta stream ({after - before:+.1f} MB, "
              f"{elapsed:.2f} s)")
        assert after - before < 20
    finally:
        await channel.close()
        stdin.close()
        await asyncio.wait_for(process.wait(), 10)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_unknown_type_urls_are_answered_once_and_become_neither_state_nor_labels(
        start_xds: StartServer, delta: bool) -> None:
    xds = await start_xds(limits=XdsLimits(max_unknown_types=16))
    stream = xds.open(delta=delta)
    stream.send(node=NODE, type_url=CLUSTER)
    stream.ack(await stream.recv())
    offered, answers = 2_000, 0
    refused: grpc.aio.AioRpcError | None = None
    for i in range(offered):
        stream.send(type_url=f"type.googleapis.com/client.Chosen{i}")
        try:
            answer = await stream.recv(within=10)
        except grpc.aio.AioRpcError as error:
            refused = error
            break
        assert not names_of(answer)
        stream.ack(answer)  # an ACK of an unknown type is not answered again
        answers += 1
    assert refused is not None
    print(f"\n{offered} unknown type URLs offered one at a time: {answers} answers, then {refused.code().name}")
    assert answers == 16
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert type_label_values(xds) <= KNOWN_LABELS
    assert "Chosen" not in generate_latest(xds.server.metrics.registry).decode()


async def test_unknown_types_never_enter_a_streams_state(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url="type.googleapis.com/client.Chosen")
    answer = await stream.recv()
    stream.send(type_url=answer.type_url, response_nonce=answer.nonce, nack="forged rejection")
    await stream.assert_silent()
    (node,) = xds.server.status.nodes()
    assert node.types == {}
    assert xds.server.status.rejections() == []


async def test_a_client_that_never_reads_cannot_grow_the_servers_queue(start_xds: StartServer) -> None:
    bound = 16
    xds = await start_xds(limits=XdsLimits(max_queued_requests=bound))
    xds.publish(clusters=tuple(f"cluster-{i:03d}" for i in range(300)))  # responses of ~40 KB
    offered, sent = 200_000, 0

    async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        nonlocal sent
        yield discovery_pb2.DiscoveryRequest(node=NODE, type_url=CLUSTER)
        for _ in range(offered - 1):
            sent += 1
            yield discovery_pb2.DiscoveryRequest(type_url=CLUSTER)  # a first ask: answered every time

    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(xds.channel)
    call = stub.StreamAggregatedResources(requests())  # never read
    try:
        await eventually(lambda: len(xds.server.status.nodes()) == 1)
        (node,) = xds.server.status.nodes()
        before = rss_mb()
        peak = 0
        for _ in range(30):
            await asyncio.sleep(0.1)
            peak = max(peak, node.queued_requests)
        sent_at_3s = sent
        await asyncio.sleep(1.0)
        pushes = node.types[CLUSTER].pushes
        print(f"\nnon-reading client: {sent_at_3s} requests sent in 3 s, {sent} after 4 s, of {offered}; "
              f"server queue peak {peak} (bound {bound}); {pushes} responses written; "
              f"RSS {before:.1f} -> {rss_mb():.1f} MB")
        assert peak <= bound
        assert sent < offered - 1
    finally:
        call.cancel()
    await eventually(lambda: xds.server.status.nodes() == [])


async def test_streams_that_never_send_a_first_request_are_closed_at_the_deadline(
        start_xds: StartServer) -> None:
    xds = await start_xds(limits=XdsLimits(first_request_timeout=0.5))
    started = time.monotonic()
    silent = [xds.open() for _ in range(50)]
    codes = [(await refusal(stream, within=20)).code() for stream in silent]
    print(f"\n50 silent streams closed after {time.monotonic() - started:.2f} s (deadline 0.5 s)")
    assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert 'xds_limited_streams_total{limit="first_request_timeout"} 50.0' in generate_latest(
        xds.server.metrics.registry).decode()
    assert xds.server.status.nodes() == []


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_rejections_are_logged_as_events_and_kept_bounded_without_key_material(
        start_xds: StartServer, delta: bool, caplog: pytest.LogCaptureFixture) -> None:
    xds = await start_xds()
    stream = xds.open(delta=delta)
    if delta:
        stream.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1"])
    else:
        stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c1"])
    sent = await stream.recv()
    body = f"Error adding endpoints c1: private_key {{ inline_string: \"{PEM}\" }} " + "x" * 256_000
    caplog.set_level(logging.WARNING, "xdsserver")
    for _ in range(40):
        if delta:
            stream.send(type_url=ENDPOINT, response_nonce=sent.nonce, nack=body)
        else:
            stream.send(type_url=ENDPOINT, resource_names=["c1"], response_nonce=sent.nonce, nack=body)
    await eventually(lambda: sum(n.count for n in xds.server.status.rejected_nodes()) == 40)

    (summary,) = xds.server.status.rejected_nodes()
    kept = xds.server.status.rejections()
    assert (summary.cluster, summary.node_id, summary.count) == ("east", "infra/gw/0", 40)
    assert len(kept) == xds.server.status.keep_rejections < 40
    assert summary.last.resource_names == ("c1",)
    assert (summary.last.nonce, summary.last.type_url) == (sent.nonce, ENDPOINT)
    (node,) = xds.server.status.nodes()
    shown = [r.message for r in kept] + [node.types[ENDPOINT].nack_message]
    logged = [record.getMessage() for record in caplog.records if "rejection" in record.getMessage()]
    print(f"\n40 NACKs of {len(body) // 1000} KB: {len(kept)} kept, {sum(map(len, shown))} characters "
          f"of message in all; {len(logged)} log lines")
    assert 1 <= len(logged) <= 10
    for text in shown + logged:
        for fragment in ("BEGIN", "MIIE", "QQQQ"):
            assert fragment not in text
    assert all(len(text) <= 256 for text in shown)
    assert "Error adding endpoints c1" in shown[0]
    assert all("infra/gw/0" in line and "east" in line and "ClusterLoadAssignment" in line and "c1" in line
               for line in logged)


def test_an_excerpt_is_short_single_line_and_free_of_key_material() -> None:
    assert excerpt("duplicate listener name") == "duplicate listener name"
    assert excerpt(f"bad cert: {PEM} trailing") == "bad cert: [redacted]"
    assert excerpt('password: "hunter2", secret=abc') == 'password: [redacted], secret=[redacted]'
    assert excerpt("token " + "A1b2" * 20) == "token [redacted]"
    assert excerpt("line one\nline two\r\x1b[31m") == "line one line two [31m"
    long = excerpt("y " * 10_000)
    assert len(long) == 256
    assert long.endswith("…")
