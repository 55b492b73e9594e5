"""`mcgw xds-demo`: a real Envoy gets config over ADS, serves it, and applies an update."""

from __future__ import annotations

import pytest

from mcgw.app.xds_demo import run_demo
from mcgw.support.netutil import free_port


@pytest.mark.parametrize("api_type", ["DELTA_GRPC", "GRPC"])
async def test_demo_serves_route_and_applies_update(api_type: str) -> None:
    result = await run_demo(listen_port=free_port(), api_type=api_type, once=True, say=False)  # type: ignore[arg-type]
    assert result.first_answer["cluster"] == "demo"
    assert result.first_answer["path"] == "/demo?from=mcgw"
    assert result.first_greeting == "hello from snapshot 1"
    assert result.second_greeting == "hello from snapshot 2"
    assert set(result.acked) == {"Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"}
    assert all(result.acked.values()), result.acked
