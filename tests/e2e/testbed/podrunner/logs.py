"""The kubelet's log endpoint over HTTPS, which the API server proxies ``pods/{name}/log`` to.

``GET /containerLogs/{namespace}/{pod}/{container}`` with ``sinceTime``, ``sinceSeconds``, ``tailLines``,
``timestamps``, ``limitBytes``, ``previous`` and ``follow``. Any client is accepted (the API server does
not present a certificate unless told to), and the certificate is one the runner's own CA issued.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .logformat import LogQuery, limit, parse_lines, parse_timestamp, render, select

FOLLOW_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LogSource:
    path: Path
    running: Callable[[], bool]


Finder = Callable[[str, str, str, bool], LogSource | str]


def query_from(params: dict[str, str]) -> LogQuery:
    """The log API's query parameters; raises ValueError for malformed ones."""
    since_ns = None
    if params.get("sinceTime"):
        since_ns = parse_timestamp(params["sinceTime"])
    elif params.get("sinceSeconds"):
        since_ns = time.time_ns() - int(params["sinceSeconds"]) * 10**9
    tail = int(params["tailLines"]) if params.get("tailLines") else None
    limit_bytes = int(params["limitBytes"]) if params.get("limitBytes") else None
    return LogQuery(since_ns, tail, params.get("timestamps", "").lower() in ("1", "true"), limit_bytes)


def read_logs(path: Path, query: LogQuery) -> tuple[bytes, int]:
    """The selected output, and how far into the file it was read (where ``follow`` continues)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b"", 0
    end = data.rfind(b"\n") + 1
    return limit(render(select(parse_lines(data[:end]), query), query.timestamps), query.limit_bytes), end


class LogServer:
    def __init__(self, find: Finder, sock: socket.socket, cert: Path, key: Path) -> None:
        self.find = find
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(str(cert), str(key))
        self._ssl.verify_mode = ssl.CERT_NONE
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.SockSite(self._runner, self.sock, ssl_context=self._ssl)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        params = dict(request.query)
        try:
            query = query_from(params)
        except ValueError as error:
            return web.Response(status=400, text=str(error))
        found = self.find(info["namespace"], info["pod"], info["container"],
                          params.get("previous", "").lower() in ("1", "true"))
        if isinstance(found, str):
            return web.Response(status=404, text=found)
        data, offset = read_logs(found.path, query)
        if params.get("follow", "").lower() not in ("1", "true"):
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        sent = len(data)
        follow_query = LogQuery(timestamps=query.timestamps)
        while query.limit_bytes is None or sent < query.limit_bytes:
            more, offset = await asyncio.to_thread(_read_from, found.path, offset, follow_query)
            if more:
                if query.limit_bytes is not None:
                    more = more[:query.limit_bytes - sent]
                await response.write(more)
                sent += len(more)
            elif not found.running():
                break
            else:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response


def _read_from(path: Path, offset: int, query: LogQuery) -> tuple[bytes, int]:
    try:
        with path.open("rb") as source:
            source.seek(offset)
            data = source.read()
    except FileNotFoundError:
        return b"", offset
    end = data.rfind(b"\n") + 1
    return render(select(parse_lines(data[:end]), query), query.timestamps), offset + end
