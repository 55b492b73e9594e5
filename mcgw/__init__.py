"""mcgw: a multi-cluster Gateway API controller and Envoy xDS server with priority-ordered failover."""

__version__ = "0.1.0"
