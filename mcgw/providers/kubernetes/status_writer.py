"""Write computed status through the status subresource: read, merge, write only if changed.

Conflicts (another writer got there first) are retried with a fresh read; a stored status that
already describes a newer generation is left alone.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.model import GATEWAY_GROUP
from mcgw.pipeline import ClusterOutput
from mcgw.status_merge import (
    merge_conditions,
    merge_gateway_status,
    merge_route_status,
    stored_generation_is_newer,
)

from .retry import with_retries

log = logging.getLogger(__name__)
_PLURALS = {"GatewayClass": "gatewayclasses", "Gateway": "gateways", "HTTPRoute": "httproutes"}
_MAX_ATTEMPTS = 5


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_for(kind: str) -> Callable[[dict[str, Any], dict[str, Any], str], dict[str, Any]]:
    if kind == "Gateway":
        return merge_gateway_status
    if kind == "HTTPRoute":
        return merge_route_status

    def merge_class(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
        return {**stored, "conditions": merge_conditions(stored.get("conditions", []), ours["conditions"], now)}

    return merge_class


async def _write_one(custom: client.CustomObjectsApi, kind: str, namespace: str, name: str, ours: dict[str, Any],
                     generation: int) -> bool:
    """True if the status was written, False if it was already up to date (or newer)."""
    plural = _PLURALS[kind]
    for _ in range(_MAX_ATTEMPTS):
        if namespace:
            fetched = await with_retries(partial(custom.get_namespaced_custom_object_status, GATEWAY_GROUP, "v1",
                                                 namespace, plural, name), f"read {kind} {namespace}/{name}")
        else:
            fetched = await with_retries(partial(custom.get_cluster_custom_object_status, GATEWAY_GROUP, "v1",
                                                 plural, name), f"read {kind} {name}")
        stored_object = cast(dict[str, Any], fetched)
        stored = stored_object.get("status") or {}
        if stored_generation_is_newer(stored, generation):
            return False
        merged = _merge_for(kind)(stored, ours, _now())
        if merged == stored:
            return False
        body = {**stored_object, "status": merged}
        try:
            if namespace:
                await with_retries(partial(custom.replace_namespaced_custom_object_status, GATEWAY_GROUP, "v1",
                                           namespace, plural, name, body), f"write {kind} {namespace}/{name}")
            else:
                await with_retries(partial(custom.replace_cluster_custom_object_status, GATEWAY_GROUP, "v1",
                                           plural, name, body), f"write {kind} {name}")
            return True
        except ApiException as error:
            if error.status != 409:
                raise
            log.info("status conflict on %s %s/%s, retrying", kind, namespace, name)
    raise RuntimeError(f"gave up writing status of {kind} {namespace}/{name} after {_MAX_ATTEMPTS} conflicts")


async def write_statuses(api: client.ApiClient, output: ClusterOutput) -> int:
    """Write every status in ``output``; returns how many objects changed."""
    custom = client.CustomObjectsApi(api)
    written = 0
    for kind, by_name in output.statuses().items():
        for key, status in by_name.items():
            namespace, _, name = key.rpartition("/")
            conditions = status.get("conditions", []) + [c for p in status.get("parents", []) for c in p["conditions"]]
            generation = max((c["observedGeneration"] for c in conditions), default=0)
            if await _write_one(custom, kind, namespace, name, status, generation):
                written += 1
    return written
