"""Open-loop load at a constant rate, with a per-request timeline, for failover tests and benchmarks.

Open loop: request ``i`` is sent at ``i / rate`` seconds whatever happened to the earlier ones, so a
stalled backend shows up as failed or slow requests instead of silently lowering the rate (a closed
loop would wait, and hide exactly the failures a failover measurement is after).

The generator runs in a process of its own, so it keeps its pace while the caller blocks (injecting a
fault, waiting for an API server) or runs a controller in-process. Every request is recorded as a
``Sample``: when it was sent, which cluster (and, over HTTP, which pod) answered (the echo backend's JSON),
its status and latency.
A request with no answer within ``timeout`` is a failure with status 0.

A ``grpc://host:port/package.Service/Method`` URL makes the requests unary gRPC calls (empty request,
one HTTP/2 connection, the deadline ``timeout``) to a gRPC echo backend (``grpc_echo``) behind a gateway.

For TCP and TLS routes every request is a new connection (what such a route forwards is connections):
``tcp://host:port/path`` connects and asks the echo backend for ``path`` in HTTP/1.0 over the raw stream;
``tls://host:port/path?sni=NAME&ca=FILE`` does the same inside TLS, with ``NAME`` as the SNI and the name
checked, verified against the CA in ``FILE``, and records the certificate's subject CN as the sample's
``peer``: with TLS passthrough, the certificate of the backend that answered, never the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import aiohttp

_REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Sample:
    """One request: ``sent`` in seconds since the load started, ``latency`` in seconds.

    ``status`` is 0 when no HTTP answer came (timeout, refused or reset connection); ``cluster`` is the
    answering cluster from the echo JSON, or ``""``. A gRPC call's ``status`` is 200 when it ended with
    status OK, else 0 with the gRPC status in ``error`` (``"UNAVAILABLE: ..."``, or ``"timeout"``).
    """

    sent: float
    latency: float
    status: int
    cluster: str
    error: str = ""
    peer: str = ""  # tls:// only: the subject CN of the certificate the client verified
    pod: str = ""  # http(s):// only: the answering echo backend's pod, from its JSON (two of one cluster apart)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def completed(self) -> float:
        """When the answer (or the failure) came, on the same clock as ``sent``."""
        return self.sent + self.latency


@dataclass(frozen=True)
class Mark:
    """Something that happened during the load (a fault, a restore), on the load's clock."""

    at: float
    label: str


class OpenLoopLoad:
    """``rate`` requests per second to ``url`` from a child process until ``stop``.

    The requests are made by a process of their own (``python -m tests.e2e.testbed.load``), so neither
    the GIL nor a busy event loop of the caller (a controller running in-process, a blocking fault)
    delays a send or a measured latency. Its samples stream back as JSON lines to a reader thread.
    ``now()`` and ``mark()`` put the caller's events on the same clock as the samples (CLOCK_MONOTONIC
    is shared by every process).
    """

    def __init__(self, url: str, rate: float = 200.0, timeout: float = 5.0, new_connections: bool = False) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.url = url
        self.rate = rate
        self.timeout = timeout
        # One connection per request (for HTTPS: one handshake each, so every request sees the current certificate).
        self.new_connections = new_connections
        self.samples: list[Sample] = []
        self.marks: list[Mark] = []
        self.max_send_lag = 0.0  # how far behind schedule a send ever was: the generator's own health
        self._t0 = 0.0
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._started = threading.Event()
        self._reader: threading.Thread | None = None
        self._error = ""

    def start(self) -> OpenLoopLoad:
        if self._process is not None:
            raise RuntimeError("the load was already started")
        # A file, not a pipe: a chatty child can never block on it. Closed by stop().
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, self.url, str(self.rate), str(self.timeout),
             "new" if self.new_connections else "reuse"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=_REPO,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))},
        )
        self._reader = threading.Thread(target=self._read, args=(self._process,), name="open-loop-load reader",
                                        daemon=True)
        self._reader.start()
        self._started.wait()
        if self._error:
            self.stop()
        return self

    def stop(self) -> list[Sample]:
        """Stop sending, wait for the requests in flight (at most ``timeout``), return every sample by send time."""
        process = self._process
        if process is not None and process.poll() is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # end of input: the child stops sending
        if self._reader is not None:
            self._reader.join()
        if process is not None:
            try:
                process.wait(self.timeout + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
        if self._error:
            raise RuntimeError(f"the load generator failed: {self._error}")
        self.samples.sort(key=lambda s: s.sent)
        return self.samples

    def __enter__(self) -> OpenLoopLoad:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the first request was scheduled."""
        return time.monotonic() - self._t0

    def mark(self, label: str) -> float:
        at = self.now()
        self.marks.append(Mark(at, label))
        return at

    def answered_since(self, since: float) -> list[Sample]:
        """Samples sent at or after ``since`` that have an answer already (safe while running)."""
        return [s for s in list(self.samples) if s.sent >= since]

    def _read(self, process: subprocess.Popen[str]) -> None:
        try:
            for line in process.stdout or ():
                message = json.loads(line)
                if "start" in message:
                    self._t0 = message["start"]
                    self._started.set()
                elif "samples" in message:
                    self.samples.extend(Sample(sent - self._t0, *rest) for sent, *rest in message["samples"])
                elif "done" in message:
                    self.max_send_lag = message["done"]
                    return
            code = process.wait()
            stderr = ""
            if self._stderr is not None:
                self._stderr.seek(0)
                stderr = self._stderr.read().strip()[-2000:]
            self._error = f"exited with {code}: {stderr}"
        finally:
            self._started.set()


async def _generate(url: str, rate: float, limit: float, stopping: threading.Event,
                    new_connections: bool = False) -> None:
    """The child process: send on schedule; print batches of [sent, latency, status, cluster, error, peer, pod].
    HTTPS does not verify the gateway's certificate (test certificates are self-signed); tls:// does."""
    batch: list[tuple[float, float, int, str, str, str, str]] = []
    lag = 0.0

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def one(call: Call) -> None:
        started = time.monotonic()
        status, cluster, error, *extra = await call()
        latency = time.monotonic() - started
        if status and latency > limit:  # answered, but later than the client would have waited
            status, error = 0, "timeout"
        peer, pod = (*extra, "", "")[:2]
        batch.append((started, latency, status, cluster, error, peer, pod))

    async def flush() -> None:
        while True:
            await asyncio.sleep(0.05)
            if batch:
                emit({"samples": batch[:]})
                batch.clear()

    pending: set[asyncio.Task[None]] = set()
    client = _client(url, limit, new_connections)
    async with client as call:
        flusher = asyncio.create_task(flush())
        t0 = time.monotonic()
        emit({"start": t0})
        index = 0
        while not stopping.is_set():
            delay = t0 + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            task = asyncio.create_task(one(call))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        await asyncio.gather(*pending, return_exceptions=True)
        flusher.cancel()
    if batch:
        emit({"samples": batch})
    emit({"done": lag})


# One request: (status, cluster, error[, peer[, pod]]) as a Sample records them.
Call = Callable[[], Awaitable[tuple[int, str, str] | tuple[int, str, str, str] | tuple[int, str, str, str, str]]]


def _client(url: str, limit: float, new_connections: bool) -> contextlib.AbstractAsyncContextManager[Call]:
    scheme = url.partition("://")[0]
    if scheme == "grpc":
        return _grpc_client(url, limit)
    if scheme in ("tcp", "tls"):
        return _stream_client(url, limit)
    return _http_client(url, limit, new_connections)


@contextlib.asynccontextmanager
async def _http_client(url: str, limit: float, new_connections: bool) -> AsyncIterator[Call]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, force_close=new_connections,
                                     ssl=not url.startswith("https:"))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=limit)) as session:
        async def call() -> tuple[int, str, str, str, str]:
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    cluster, pod = _who(body)
                    return response.status, cluster, "", "", pod
            except TimeoutError:
                return 0, "", "timeout", "", ""
            except aiohttp.ClientError as failure:
                return 0, "", f"{type(failure).__name__}: {failure}", "", ""

        yield call


@contextlib.asynccontextmanager
async def _grpc_client(url: str, limit: float) -> AsyncIterator[Call]:
    """Unary calls of ``grpc://host:port/package.Service/Method`` over one channel."""
    import grpc  # local: HTTP loads need no grpcio

    target, _, method = url.removeprefix("grpc://").partition("/")
    async with grpc.aio.insecure_channel(target, options=(("grpc.enable_http_proxy", 0),)) as channel:
        unary = channel.unary_unary(f"/{method}")

        async def call() -> tuple[int, str, str]:
            try:
                body: bytes = await unary(b"", timeout=limit)
            except grpc.aio.AioRpcError as failure:
                code = failure.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return 0, "", "timeout"
                return 0, "", f"{code.name}: {failure.details()}"
            return 200, _cluster(body), ""

        yield call


@contextlib.asynccontextmanager
async def _stream_client(url: str, limit: float) -> AsyncIterator[Call]:
    """One new connection per call: ``tcp://`` in the clear, ``tls://`` verified (see the module's doc)."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 0
    query = urllib.parse.parse_qs(parsed.query)
    context: ssl.SSLContext | None = None
    sni = ""
    if parsed.scheme == "tls":
        sni = query["sni"][0]
        context = ssl.create_default_context(cafile=query["ca"][0])
    request = f"GET {parsed.path or '/'} HTTP/1.0\r\nHost: {sni or host}\r\n\r\n".encode()

    async def call() -> tuple[int, str, str, str]:
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                           server_hostname=sni or None)
        except ssl.SSLError as failure:
            return 0, "", f"tls: {failure.reason or failure}", ""
        except OSError as failure:
            return 0, "", f"connect: {type(failure).__name__}", ""
        try:
            peer = _common_name(writer.get_extra_info("peercert")) if context else ""
            writer.write(request)
            response = await reader.read()
            head, _, body = response.partition(b"\r\n\r\n")
            if not head:
                return 0, "", "closed before an answer", peer
            status = int(head.split(b" ", 2)[1])
            return status, _cluster(body), "", peer
        except (OSError, ValueError, IndexError) as failure:
            return 0, "", f"answer: {type(failure).__name__}", ""
        finally:
            writer.close()

    async def bounded() -> tuple[int, str, str, str]:
        try:
            return await asyncio.wait_for(call(), limit)
        except TimeoutError:
            return 0, "", "timeout", ""

    yield bounded


def _common_name(certificate: Any) -> str:
    """The subject CN of a certificate as ``SSLObject.getpeercert()`` gives it."""
    for attributes in (certificate or {}).get("subject", ()):
        for key, value in attributes:
            if key == "commonName":
                return str(value)
    return ""


def _child_main(argv: list[str]) -> None:
    url, rate, limit = argv[0], float(argv[1]), float(argv[2])
    new_connections = len(argv) > 3 and argv[3] == "new"
    stopping = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.read()  # returns at end of input: the parent closed our stdin
        stopping.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    asyncio.run(_generate(url, rate, limit, stopping, new_connections))


def _cluster(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(body).get("cluster") or "")
    return ""


def _who(body: bytes) -> tuple[str, str]:
    """The cluster and pod an echo backend's JSON names, or empty strings."""
    with contextlib.suppress(ValueError, AttributeError):
        answer = json.loads(body)
        return str(answer.get("cluster") or ""), str(answer.get("pod") or "")
    return "", ""


@contextlib.contextmanager
def open_loop(url: str, rate: float = 200.0, timeout: float = 5.0) -> Iterator[OpenLoopLoad]:
    load = OpenLoopLoad(url, rate, timeout)
    load.start()
    try:
        yield load
    finally:
        load.stop()


# -- reading a timeline --------------------------------------------------------------------------------

def between(samples: Iterable[Sample], start: float = -math.inf, end: float = math.inf) -> list[Sample]:
    """Samples sent in ``[start, end)``."""
    return [s for s in samples if start <= s.sent < end]


def failures(samples: Iterable[Sample]) -> list[Sample]:
    return [s for s in samples if not s.ok]


def describe_failures(samples: Sequence[Sample]) -> str:
    """How many of ``samples`` failed, by status or error, and when the first was sent: for assert messages."""
    failed = failures(samples)
    kinds: dict[str, int] = {}
    for sample in failed:
        key = str(sample.status) if sample.status else sample.error.split(":")[0]
        kinds[key] = kinds.get(key, 0) + 1
    first = failed[0].sent if failed else 0.0
    return f"{len(failed)} of {len(samples)} requests failed ({kinds}), the first sent at {first:.2f}s"


def served_by(samples: Iterable[Sample]) -> dict[str, int]:
    """How many successful answers each cluster gave."""
    counts: dict[str, int] = {}
    for sample in samples:
        if sample.ok:
            counts[sample.cluster] = counts.get(sample.cluster, 0) + 1
    return counts


def settles(load: OpenLoopLoad, since: float, holds: Callable[[Sample], bool],
            seconds: float = 1.0) -> Callable[[], bool]:
    """A condition to wait for: every answer to the last ``seconds`` of requests (sent after ``since``) satisfies
    ``holds``, and requests have been sent for at least that long."""
    def check() -> bool:
        samples = sorted(load.answered_since(since), key=lambda s: s.sent)
        if not samples or samples[-1].sent - since < seconds:
            return False
        return all(holds(s) for s in samples if s.sent >= samples[-1].sent - seconds)

    return check


def settled_at(samples: Sequence[Sample], since: float, clusters: Iterable[str]) -> float | None:
    """When traffic settled on ``clusters``: the send time of the first request from which on (up to the
    end of ``samples``) every request sent after ``since`` was answered 200 by one of ``clusters``.

    ``None`` when the last request was not (traffic never settled). Measured by send time, so requests
    in flight when a fault hit count against the fault.
    """
    wanted = set(clusters)
    ordered = sorted((s for s in samples if s.sent >= since), key=lambda s: s.sent)
    first = None
    for sample in reversed(ordered):
        if not (sample.ok and sample.cluster in wanted):
            break
        first = sample.sent
    return first


def time_to_settle(samples: Sequence[Sample], since: float, clusters: Iterable[str]) -> float | None:
    """Seconds from ``since`` until every answer comes from ``clusters`` (see ``settled_at``)."""
    at = settled_at(samples, since, clusters)
    return None if at is None else max(0.0, at - since)


async def until_served_by(load: OpenLoopLoad, since: float, cluster: str, streak: int = 100,
                          within: float = 30) -> None:
    """Wait until the last ``streak`` requests sent after ``since`` were each answered by ``cluster``."""
    deadline = time.monotonic() + within
    while True:
        answered = sorted(load.answered_since(since), key=lambda s: s.sent)[-streak:]
        if len(answered) == streak and all(s.ok and s.cluster == cluster for s in answered):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"requests never all went to {cluster} within {within:g} s: {answered[-5:]}")
        await asyncio.sleep(0.1)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.99 for p99); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Buckets:
    """Answers per second by cluster, and failures per second, in fixed-width time buckets."""

    width: float
    starts: list[float] = field(default_factory=list)
    by_cluster: dict[str, list[float]] = field(default_factory=dict)
    failed: list[float] = field(default_factory=list)


def per_second(samples: Sequence[Sample], width: float = 0.25, clusters: Sequence[str] = ()) -> Buckets:
    """Rates by send time: successful answers per cluster and failures, each in requests/s."""
    buckets = Buckets(width)
    if not samples:
        return buckets
    count = int(max(s.sent for s in samples) / width)  # whole buckets only: a partial last one reads low
    buckets.starts = [i * width for i in range(count)]
    names = list(clusters) + sorted({s.cluster for s in samples if s.ok} - set(clusters))
    buckets.by_cluster = {name: [0.0] * count for name in names}
    buckets.failed = [0.0] * count
    for sample in samples:
        index = int(sample.sent / width)
        if index >= count:
            continue
        if sample.ok:
            buckets.by_cluster[sample.cluster][index] += 1 / width
        else:
            buckets.failed[index] += 1 / width
    return buckets


if __name__ == "__main__":
    _child_main(sys.argv[1:])
