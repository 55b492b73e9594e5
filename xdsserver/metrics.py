"""Prometheus metrics of the xDS server, on a registry of the caller's choosing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .resources import PUSH_ORDER

# Push-to-ACK is milliseconds on loopback and seconds across regions or under load.
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class XdsMetrics:
    """Streams, pushes, bytes, push→ACK latency and NACKs, labelled by mode or resource type; and the load
    reporting (LRS) streams with their reports. Denials and limits count ADS and LRS streams alike."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.streams = Gauge("xds_streams", "Open ADS streams", ["mode"], registry=self.registry)
        self.pushes = Counter("xds_pushes", "Responses sent", ["type"], registry=self.registry)
        self.bytes_sent = Counter("xds_sent_bytes", "Serialised response bytes sent", ["type"],
                                  registry=self.registry)
        self.push_to_ack = Histogram("xds_push_ack_seconds", "Time from a push to its ACK", ["type"],
                                     buckets=_ACK_BUCKETS, registry=self.registry)
        self.nacks = Counter("xds_nacks", "Responses rejected by Envoy", ["type"], registry=self.registry)
        self.denied = Counter("xds_denied_streams", "Streams refused: bad identity or unknown node group",
                              ["reason"], registry=self.registry)
        self.limited = Counter("xds_limited_streams", "Streams closed for exceeding a limit (see XdsLimits)",
                               ["limit"], registry=self.registry)
        self.lrs_streams = Gauge("xds_lrs_streams", "Open load reporting (LRS) streams", registry=self.registry)
        self.lrs_reports = Counter("xds_lrs_reports", "Load reports received and handed to the sink",
                                   registry=self.registry)
        self.lrs_report_errors = Counter(
            "xds_lrs_report_errors", "Load reports not delivered: malformed, past a limit, or the sink raised",
            ["reason"], registry=self.registry)


_KNOWN_LABELS = {type_url: type_url.rsplit(".", 1)[-1] for type_url in PUSH_ORDER}


def type_label(type_url: str) -> str:
    """The metric label of a type: its short name for the types the server knows, else ``unknown``, so
    that no label value (and no series) comes from what a client sent."""
    return _KNOWN_LABELS.get(type_url, "unknown")


def short_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.cluster.v3.Cluster`` → ``Cluster``, for labels."""
    return type_url.rsplit(".", 1)[-1]
