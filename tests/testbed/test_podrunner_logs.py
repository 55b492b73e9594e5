"""Container log files and the kubelet log API: timestamps, sinceTime, tailLines, timestamps, follow."""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.testbed.pki import CertificateAuthority
from tests.e2e.testbed.podrunner.logformat import (
    MAX_LINE,
    LogQuery,
    encode_lines,
    format_timestamp,
    parse_line,
    parse_lines,
    parse_timestamp,
    render,
    select,
)
from tests.e2e.testbed.podrunner.logs import LogServer, LogSource, query_from, read_logs

BASE = parse_timestamp("2026-01-01T00:00:00Z")


@pytest.mark.parametrize(("ns", "text"), [
    (BASE, "2026-01-01T00:00:00Z"),
    (BASE + 500_000_000, "2026-01-01T00:00:00.5Z"),
    (BASE + 123_456_789, "2026-01-01T00:00:00.123456789Z"),
    (BASE + 1_000, "2026-01-01T00:00:00.000001Z"),
])
def test_rfc3339_nano_round_trip(ns: int, text: str) -> None:
    assert format_timestamp(ns) == text
    assert parse_timestamp(text) == ns


def test_parse_timestamp_with_offsets() -> None:
    assert parse_timestamp("2026-01-01T02:00:00+02:00") == BASE
    assert parse_timestamp("2025-12-31T23:30:00.25-00:30") == BASE + 250_000_000
    with pytest.raises(ValueError, match="not an RFC3339 time"):
        parse_timestamp("yesterday")


def _log(*lines: tuple[int, str, bytes]) -> bytes:
    return b"".join(encode_lines(BASE + offset * 10**9, stream, text) for offset, stream, text in lines)


LOG = _log((0, "stdout", b"boot"), (1, "stderr", b"warn"), (2, "stdout", b"one"), (3, "stdout", b"two"))


def test_lines_and_partial_lines() -> None:
    (line,) = parse_lines(encode_lines(BASE, "stdout", b"hello world"))
    assert (line.stream, line.partial, line.content) == ("stdout", False, b"hello world")
    long = parse_lines(encode_lines(BASE, "stdout", b"x" * (MAX_LINE + 10)))
    assert [piece.partial for piece in long] == [True, False]
    assert render(long, timestamps=False) == b"x" * (MAX_LINE + 10) + b"\n"
    assert render(long, timestamps=True).count(b"2026-") == 1
    assert parse_line(b"garbage") is None


@pytest.mark.parametrize(("query", "expected"), [
    (LogQuery(), b"boot\nwarn\none\ntwo\n"),
    (LogQuery(tail_lines=2), b"one\ntwo\n"),
    (LogQuery(tail_lines=0), b""),
    (LogQuery(tail_lines=10), b"boot\nwarn\none\ntwo\n"),
    (LogQuery(since_ns=BASE + 2 * 10**9), b"one\ntwo\n"),
    (LogQuery(since_ns=BASE + 10**9 + 1), b"one\ntwo\n"),
    (LogQuery(since_ns=BASE + 10**9, tail_lines=3), b"warn\none\ntwo\n"),
    (LogQuery(since_ns=BASE + 3 * 10**9, tail_lines=3), b"two\n"),
    (LogQuery(timestamps=True, tail_lines=1), b"2026-01-01T00:00:03Z two\n"),
])
def test_select_and_render(query: LogQuery, expected: bytes) -> None:
    assert render(select(parse_lines(LOG), query), query.timestamps) == expected


def test_query_parameters(tmp_path: Path) -> None:
    query = query_from({"sinceTime": "2026-01-01T00:00:02Z", "tailLines": "5", "timestamps": "true",
                        "limitBytes": "7"})
    assert query == LogQuery(BASE + 2 * 10**9, 5, True, 7)
    path = tmp_path / "0.log"
    path.write_bytes(LOG + b"2026-01-01T00:00:04Z stdout F unfinished")  # no newline yet: not served
    data, offset = read_logs(path, LogQuery(since_ns=BASE + 3 * 10**9))
    assert data == b"two\n"
    assert offset == len(LOG)
    assert read_logs(path, LogQuery(limit_bytes=6))[0] == b"boot\nw"
    assert read_logs(tmp_path / "missing.log", LogQuery()) == (b"", 0)
    with pytest.raises(ValueError, match="not an RFC3339 time"):
        query_from({"sinceTime": "soon"})


async def test_log_server_over_https(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki", "test-kubelet-ca")
    issued = ca.issue("kubelet", "node", server=True, ips=("127.0.0.1",))
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    running = {"yes": True}

    def find(namespace: str, pod: str, container: str, previous: bool) -> LogSource | str:
        if (namespace, pod, container) == ("shop", "web-1", "c") and not previous:
            return LogSource(path, lambda: running["yes"])
        return "not found"

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    server = LogServer(find, listener, issued.cert, issued.key)
    await server.start()
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    base = f"https://127.0.0.1:{server.port}/containerLogs/shop/web-1"

    def get(url: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                return response.status, bytes(response.read())
        except urllib.error.HTTPError as error:
            return error.code, b""

    try:
        assert await asyncio.to_thread(get, f"{base}/c?tailLines=2") == (200, b"one\ntwo\n")
        assert await asyncio.to_thread(get, f"{base}/c?sinceTime=2026-01-01T00:00:03Z&timestamps=true") == \
            (200, b"2026-01-01T00:00:03Z two\n")
        assert (await asyncio.to_thread(get, f"{base}/other"))[0] == 404
        assert (await asyncio.to_thread(get, f"{base}/c?sinceTime=bad"))[0] == 400

        follow = asyncio.create_task(asyncio.to_thread(get, f"{base}/c?follow=true&tailLines=1"))
        await asyncio.sleep(0.5)
        with path.open("ab") as out:
            out.write(_log((4, "stdout", b"three")))
        await asyncio.sleep(0.5)
        running["yes"] = False  # the container ended: the stream ends once everything was sent
        assert await asyncio.wait_for(follow, 10) == (200, b"two\nthree\n")
    finally:
        await server.stop()
