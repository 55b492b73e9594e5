"""A small asynchronous Kubernetes API client over aiohttp: the few verbs a kubelet needs, and watches.

The runner talks to one API server with the kubeconfig's client certificate. Watches yield events until
the server ends them; a 410 (Gone) ``ERROR`` event raises :class:`Expired` so the caller relists.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

Json = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str) -> None:
        super().__init__(f"{what}: {status} {body[:300]}")
        self.status = status
        self.body = body


class Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_file: str
    cert_file: str
    key_file: str


def load_kubeconfig(path: Path, context: str | None = None) -> KubeConfig:
    """The server and client-certificate files of ``context`` (default: the current one)."""
    config = yaml.safe_load(path.read_text())
    name = context or config.get("current-context")
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
    base = path.parent

    def absolute(file: str) -> str:
        return str(file if Path(file).is_absolute() else base / file)

    return KubeConfig(cluster["server"], absolute(cluster["certificate-authority"]),
                      absolute(user["client-certificate"]), absolute(user["client-key"]))


class KubeApi:
    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self._ssl = ssl.create_default_context(cafile=config.ca_file)
        self._ssl.load_cert_chain(config.cert_file, config.key_file)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, *, params: Mapping[str, str] | None = None,
                      content_type: str = "application/json", seconds: float = 30) -> Any:
        url = self.config.server + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"} if data is not None else \
            {"Accept": "application/json"}
        async with self.session.request(method, url, data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=seconds)) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(response.status, text, f"{method} {path}")
            return json.loads(text) if text else None

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def get_or_none(self, path: str) -> Any:
        try:
            return await self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> Any:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, body: Any = None) -> Any:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> AsyncIterator[Json]:
        """Events of a watch from ``resource_version``; ends when the server closes it."""
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        url = f"{self.config.server}{path}?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        async with self.session.get(url, timeout=timeout) as response:
            if response.status == 410:
                raise Expired(path)
            if response.status >= 400:
                raise ApiError(response.status, await response.text(), f"watch {path}")
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    if status.get("code") == 410:
                        raise Expired(path)
                    raise ApiError(int(status.get("code", 500)), json.dumps(status), f"watch {path}")
                yield event
