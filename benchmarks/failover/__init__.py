"""Failover benchmark: how mcgw's priority failover behaves under steady load when the gateway's own
cluster fails, per fault and per failover policy, against a flat single-priority peer.

Run as root from the repository root: ``.venv/bin/python -m benchmarks.failover`` (``--help`` for the
options). It starts three real member clusters (east, west, central) with echo backends in their
network namespaces, ``mcgw run`` in-process with the MCS controller, and an Envoy for east's gateway,
then for each policy row and fault kind sends 200 requests/s through that Envoy and records every
request. The gRPC rows do the same with 200 unary calls/s through a GRPCRoute to gRPC echo backends, the
TCP rows with 200 new connections/s through a TCPRoute (no "backend 503" for them: not a TCP failure).
Writes ``benchmarks/results/failover.json`` and ``failover.png``; see benchmarks/README.md.

``--controls`` runs FailoverPolicy v1alpha2's controls instead (``controls.py``: a rolling restart of east under
AllOrNothing, Gradual and Gradual with minHealthyPercent 50; Gradual losing 1, then 2 of 4 backends; an excluded
cluster while every allowed one is down), each against mcgw's defaults in the same run, into
``failover-controls.json`` and ``.png``.
"""
