"""The kinds mcgw reads from a member cluster, and paginated lists of them as typed model objects.

Every kind is read through its collection path as plain JSON (no generated client models): one code
path for core, discovery and custom resources, and the dicts go straight to ``parse_object``.
``list_cluster`` is a one-shot list of everything; the informers (``informer.py``) list and then watch.
Objects that do not parse are reported, not dropped silently: the caller decides whether to go on.

Secrets are read with the field selector ``type=kubernetes.io/tls``: only TLS secrets can be a
Gateway's certificateRefs, and leaving service-account tokens, Helm releases and other large secrets
on the server keeps them out of mcgw's memory and off the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.model import GATEWAY_GROUP, MCS_GROUP, POLICY_GROUP, AnyObject, ManifestError, parse_object
from mcgw.providers.kubernetes.retry import with_retries

TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class KindSpec:
    """Where one kind lives in the API, and which of its objects mcgw wants."""

    kind: str
    api_version: str  # "v1" for core, else "group/version"
    plural: str
    namespaced: bool = True
    field_selector: str = ""

    @property
    def path(self) -> str:
        """The all-namespaces collection path, for lists and watches alike."""
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}/{self.plural}"


# Secrets: TLS only (see the module docstring). A Gateway that points at a Secret of another type
# sees no Secret, which is InvalidCertificateRef either way.
WATCHED_KINDS: tuple[KindSpec, ...] = (
    KindSpec("GatewayClass", f"{GATEWAY_GROUP}/v1", "gatewayclasses", namespaced=False),
    KindSpec("Gateway", f"{GATEWAY_GROUP}/v1", "gateways"),
    KindSpec("HTTPRoute", f"{GATEWAY_GROUP}/v1", "httproutes"),
    KindSpec("ReferenceGrant", f"{GATEWAY_GROUP}/v1beta1", "referencegrants"),
    KindSpec("Namespace", "v1", "namespaces", namespaced=False),
    KindSpec("Secret", "v1", "secrets", field_selector=f"type={TLS_SECRET_TYPE}"),
    KindSpec("Service", "v1", "services"),
    KindSpec("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
    KindSpec("ServiceExport", f"{MCS_GROUP}/v1beta1", "serviceexports"),
    KindSpec("ServiceImport", f"{MCS_GROUP}/v1beta1", "serviceimports"),
    KindSpec("FailoverPolicy", f"{POLICY_GROUP}/v1alpha1", "failoverpolicies"),
)
KINDS_BY_NAME = {spec.kind: spec for spec in WATCHED_KINDS}


def object_name(data: dict[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as every log line names an object."""
    metadata = data.get("metadata") or {}
    namespace, name = metadata.get("namespace") or "", metadata.get("name") or "?"
    return f"{namespace}/{name}" if namespace else str(name)


async def api_request(api: client.ApiClient, method: str, path: str, query: Sequence[tuple[str, str]] = (),
                      body: dict[str, Any] | None = None,
                      client_timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
    """``method path`` through ``api`` (its host, TLS and credentials), JSON in; the body is left unread.

    Anything but 2xx is raised as the client's own ``ApiException`` (status, headers, body), so
    callers handle errors the same way as with the generated API classes.
    """
    method, url, headers, data, _post = await api.param_serialize(
        method, path, query_params=list(query), header_params={"Accept": "application/json"}, body=body,
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


async def api_json(api: client.ApiClient, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """``method path`` with a JSON body; returns the decoded JSON answer."""
    response = await api_request(api, method, path, body=body)
    try:
        return json.loads(await response.read())
    finally:
        response.release()


@dataclass
class Page:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str


async def list_pages(api: client.ApiClient, spec: KindSpec, page_size: int = 500,
                     client_timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[Page]:
    """Every object of ``spec``, ``page_size`` at a time (``limit``/``continue``), with kind and apiVersion set.

    List responses omit ``kind``/``apiVersion`` on their items; they are filled in here so that each
    item parses on its own. A continue token that expired meanwhile raises ``ApiException`` 410.
    """
    client_timeout = client_timeout or aiohttp.ClientTimeout(total=60)
    token = ""
    while True:
        query = [("limit", str(page_size))]
        if token:
            query.append(("continue", token))
        if spec.field_selector:
            query.append(("fieldSelector", spec.field_selector))
        response = await api_get(api, spec.path, query, client_timeout)
        try:
            document = json.loads(await response.read())
        finally:
            response.release()
        metadata = document.get("metadata") or {}
        items = [{**item, "kind": spec.kind, "apiVersion": spec.api_version} for item in document.get("items") or []]
        token = metadata.get("continue") or ""
        yield Page(items, str(metadata.get("resourceVersion") or ""), token)
        if not token:
            return


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
    for spec in WATCHED_KINDS:
        async def pages(spec: KindSpec = spec) -> list[Page]:
            return [page async for page in list_pages(api, spec)]

        for page in await with_retries(pages, f"list {spec.plural}"):
            for item in page.items:
                listing.add(item, f"cluster {cluster} {spec.kind} {object_name(item)}")
    return listing
