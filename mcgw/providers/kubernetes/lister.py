"""Paginated lists of the kinds mcgw reads from a member cluster, as typed model objects.

Every kind is read through its collection path as plain JSON (no generated client models): one code
path for core, discovery and custom resources, and the dicts go straight to ``parse_object``.
``list_cluster`` is a one-shot list of everything; the informers (``informer.py``) list and then watch.
Which kinds, where they live and which of their objects are wanted (Secrets: TLS only) is the registry's
(``mcgw.objects.kinds``). Objects that do not parse are reported, not dropped silently: the caller
decides whether to go on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.kinds import KINDS, Kind
from mcgw.objects.model import AnyObject, ManifestError, parse_object
from mcgw.providers.kubernetes.retry import with_retries


def object_name(data: dict[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as every log line names an object."""
    metadata = data.get("metadata") or {}
    namespace, name = metadata.get("namespace") or "", metadata.get("name") or "?"
    return f"{namespace}/{name}" if namespace else str(name)


async def api_request(api: client.ApiClient, method: str, path: str, query: Sequence[tuple[str, str]] = (),
                      body: dict[str, Any] | None = None,
                      client_timeout: aiohttp.ClientTimeout | None = None,
                      content_type: str | None = None) -> aiohttp.ClientResponse:
    """``method path`` through ``api`` (its host, TLS and credentials), JSON in; the body is left unread.

    Anything but 2xx is raised as the client's own ``ApiException`` (status, headers, body), so
    callers handle errors the same way as with the generated API classes.
    """
    header_params = {"Accept": "application/json", **({"Content-Type": content_type} if content_type else {})}
    method, url, headers, data, _post = await api.param_serialize(
        method, path, query_params=list(query), header_params=header_params, body=body,
        auth_settings=["BearerToken"])
    answer = await api.call_api(method, url, headers, data,
                                _request_timeout=client_timeout or aiohttp.ClientTimeout(total=30))
    response: aiohttp.ClientResponse = answer.response
    if not 200 <= response.status <= 299:
        try:
            payload = await response.read()
        finally:
            response.release()
        answer.data = payload  # type: ignore[assignment]  # ApiException reads the body from it
        raise ApiException.from_response(http_resp=answer, body=payload.decode("utf-8", errors="replace"), data=None)
    return response


async def api_get(api: client.ApiClient, path: str, query: Sequence[tuple[str, str]],
                  client_timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
    return await api_request(api, "GET", path, query, client_timeout=client_timeout)


async def api_json(api: client.ApiClient, method: str, path: str, body: dict[str, Any] | None = None,
                   query: Sequence[tuple[str, str]] = (), content_type: str | None = None) -> Any:
    """``method path`` with a JSON body (sent as ``content_type``, JSON by default); returns the decoded answer."""
    response = await api_request(api, method, path, query, body=body, content_type=content_type)
    try:
        return json.loads(await response.read())
    finally:
        response.release()


async def read_json(api: client.ApiClient, path: str) -> dict[str, Any] | None:
    """The object at ``path`` (retried while the API server is throttling or away), or None when it has none."""
    try:
        result: dict[str, Any] = await with_retries(partial(api_json, api, "GET", path), f"read {path}")
        return result
    except ApiException as error:
        if error.status == 404:
            return None
        raise


@dataclass
class Page:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str


async def list_pages(api: client.ApiClient, path: str, selectors: Sequence[tuple[str, str]] = (),
                     page_size: int = 500, client_timeout: aiohttp.ClientTimeout | None = None, *,
                     retry_as: str = "") -> AsyncIterator[Page]:
    """Every object at the collection ``path`` matching ``selectors``, ``page_size`` at a time (``limit``/``continue``).

    With ``retry_as``, each page is fetched through ``with_retries`` (``retry_as`` names it in the logs), so
    a throttled page is asked for again rather than the whole list. A continue token that expired
    meanwhile raises ``ApiException`` 410.
    """
    client_timeout = client_timeout or aiohttp.ClientTimeout(total=60)
    token = ""
    while True:
        query = [("limit", str(page_size)), *([("continue", token)] if token else []), *selectors]

        async def fetch(query: list[tuple[str, str]] = query) -> Any:
            response = await api_get(api, path, query, client_timeout)
            try:
                return json.loads(await response.read())
            finally:
                response.release()

        document = await (with_retries(fetch, retry_as) if retry_as else fetch())
        metadata = document.get("metadata") or {}
        token = metadata.get("continue") or ""
        yield Page(list(document.get("items") or []), str(metadata.get("resourceVersion") or ""), token)
        if not token:
            return


async def list_kind_pages(api: client.ApiClient, kind: Kind, page_size: int = 500,
                          client_timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[Page]:
    """Every object of ``kind`` that mcgw wants (its field and label selectors), a page at a time, with kind
    and apiVersion set.

    List responses omit ``kind``/``apiVersion`` on their items; they are filled in here so that each
    item parses on its own.
    """
    selectors = [("fieldSelector", kind.field_selector)] if kind.field_selector else []
    if kind.label_selector:
        selectors.append(("labelSelector", kind.label_selector))
    async for page in list_pages(api, kind.path, selectors, page_size, client_timeout):
        items = [{**item, "kind": kind.name, "apiVersion": kind.api_version} for item in page.items]
        yield Page(items, page.resource_version, page.continue_token)


@dataclass
class Listing:
    objects: list[AnyObject] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)

    def add(self, data: dict[str, Any], source: str) -> None:
        try:
            self.objects.append(parse_object(data, source))
        except ManifestError as error:
            self.errors.append(error)


async def list_cluster(api: client.ApiClient, cluster: str) -> Listing:
    """Every object of every watched kind in ``cluster``, once (429/5xx answers are retried)."""
    listing = Listing()
    for kind in KINDS:
        async def pages(kind: Kind = kind) -> list[Page]:
            return [page async for page in list_kind_pages(api, kind)]

        for page in await with_retries(pages, f"list {kind.plural}"):
            for item in page.items:
                listing.add(item, f"cluster {cluster} {kind.name} {object_name(item)}")
    return listing
