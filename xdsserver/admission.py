"""Who may open a stream, for every service on the xDS port (ADS and LRS alike): a first request within the
deadline, a node that names a node group, a caller whose identity may speak for that group, and a group the
server has configuration for. One place, so the services cannot drift apart on who gets in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from envoy.config.core.v3 import base_pb2

from .auth import Authorizer, peer_uri_sans
from .cache import NodeGroup, SnapshotCache
from .limits import XdsLimits
from .metrics import XdsMetrics

NodeGrouper = Callable[[base_pb2.Node], NodeGroup]
_Request = TypeVar("_Request")


def default_node_group(node: base_pb2.Node) -> NodeGroup:
    """``node.cluster`` is the member cluster; ``node.id`` is ``<namespace>/<gateway>/<instance>``."""
    parts = node.id.split("/")
    if not node.cluster or len(parts) != 3 or not all(parts):
        raise ValueError(
            f"node id {node.id!r} in cluster {node.cluster!r} is not <namespace>/<gateway>/<instance> with "
            "node.cluster set to the member cluster ID; fix the gateway's Envoy bootstrap"
        )
    return node.cluster, f"{parts[0]}/{parts[1]}"


class Admission:
    """Admits or refuses a stream; a refusal aborts the RPC with a status code and a precise reason and is
    counted in ``xds_denied_streams_total{reason}`` (or ``xds_limited_streams_total`` for the deadline)."""

    def __init__(self, cache: SnapshotCache, node_group: NodeGrouper, metrics: XdsMetrics,
                 authorizer: Authorizer | None, limits: XdsLimits) -> None:
        self.cache = cache
        self.node_group = node_group
        self.metrics = metrics
        self.authorizer = authorizer
        self.limits = limits

    async def first_request(self, requests: AsyncIterator[_Request],
                            context: grpc.aio.ServicerContext) -> _Request | None:
        """The stream's first request, or None if the client ended the stream without one; DEADLINE_EXCEEDED
        after ``limits.first_request_timeout``: an open stream that says nothing holds a slot for nothing."""
        timeout = self.limits.first_request_timeout
        try:
            return await asyncio.wait_for(anext(requests, None), timeout)
        except TimeoutError:
            self.metrics.limited.labels("first_request_timeout").inc()
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no first request (with the node identity) within {timeout:g} s")
            raise  # not reached: abort raises

    async def admit(self, node: base_pb2.Node, context: grpc.aio.ServicerContext) -> NodeGroup:
        """The node group ``node`` belongs to, once the caller may speak for it and the server knows it."""
        try:
            group = self.node_group(node)
        except ValueError as error:
            self.metrics.denied.labels("bad_node").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if self.authorizer is not None:
            uris = peer_uri_sans(context.auth_context())
            if not self.authorizer(uris, group):
                self.metrics.denied.labels("identity").inc()
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client identity {uris or 'none'} may not read node group {group[0]}/{group[1]}",
                )
        if self.cache.get(group) is None:
            self.metrics.denied.labels("unknown_group").inc()
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no configuration for node group {group[0]}/{group[1]} (node {node.id!r}); "
                "check node.cluster and node.id in the Envoy bootstrap",
            )
        return group
