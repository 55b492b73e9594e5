"""What one xDS client can make the server hold or do, bounded; every bound configurable on the server.

An ADS port is reachable by anything that can open a connection (admission needs a first request), so
none of these may depend on the client behaving like Envoy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class XdsLimits:
    """Per-stream bounds. ``XdsServer(..., limits=XdsLimits(...))`` overrides any of them."""

    # Names one request may carry (SotW ``resource_names``; delta subscribe + unsubscribe + initial
    # versions), and names one delta stream may follow per type. Above it the stream is closed with
    # RESOURCE_EXHAUSTED: truncating would leave Envoy warming resources it will never receive.
    max_resource_names: int = 10_000
    # First requests for type URLs the server does not serve, per stream: each is answered once (an empty
    # response) and kept nowhere; one more closes the stream with RESOURCE_EXHAUSTED.
    max_unknown_types: int = 16
    # Requests read from the client but not yet handled. At the bound the server stops reading, and
    # HTTP/2 flow control stops the client's sends: a client that never reads cannot grow a queue.
    max_queued_requests: int = 64
    # Seconds from the stream's start to its first request (the node identity); then DEADLINE_EXCEEDED.
    first_request_timeout: float = 15.0
    # Largest gRPC request message accepted (NACK messages echo whole resources); gRPC's own default.
    max_request_bytes: int = 4 * 1024 * 1024
    # Load reports (LRS): clusters in one report, and localities in one report summed over its clusters.
    # Above either the stream is closed with RESOURCE_EXHAUSTED; a gateway reports a few clusters with a
    # locality per source cluster, far below.
    max_report_clusters: int = 10_000
    max_report_localities: int = 10_000
    # Reports one stream may send ahead of its reporting interval: Envoy sends one per interval, so the
    # allowance refills at that rate; a client reporting faster gets RESOURCE_EXHAUSTED once it is spent.
    max_report_burst: int = 10
