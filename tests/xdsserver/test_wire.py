"""Responses assembled from pre-encoded bytes are exactly what protobuf would have produced."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import Resource, wire


def _resources() -> list[Resource]:
    # Enough clusters that lengths need multi-byte varints.
    return [Resource.from_message(m) for m in gateway_resources(clusters=tuple(f"c{i}" for i in range(300)))]


def test_sotw_response_bytes_parse_to_the_expected_message() -> None:
    resources = _resources()
    raw = wire.sotw_response("v1", resources[0].type_url, "7", (r.sotw_field for r in resources))
    parsed = discovery_pb2.DiscoveryResponse.FromString(raw)
    expected = discovery_pb2.DiscoveryResponse(version_info="v1", type_url=resources[0].type_url, nonce="7",
                                               resources=[r.packed for r in resources])
    assert parsed == expected
    assert len(raw) == expected.ByteSize()


def test_delta_response_bytes_parse_to_the_expected_message() -> None:
    resources = _resources()
    raw = wire.delta_response("sv", resources[0].type_url, "9", (r.delta_field for r in resources), ["gone", "x"])
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
    expected = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info="sv", type_url=resources[0].type_url, nonce="9", removed_resources=["gone", "x"],
        resources=[discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed) for r in resources],
    )
    assert parsed == expected


def test_empty_fields_are_omitted_like_protobuf_does() -> None:
    assert wire.sotw_response("", "t", "", ()) == discovery_pb2.DiscoveryResponse(type_url="t").SerializeToString()


def test_varint_boundaries() -> None:
    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35):
        encoded = wire.varint(value)
        decoded, shift = 0, 0
        for byte in encoded:
            decoded |= (byte & 0x7F) << shift
            shift += 7
        assert decoded == value
        assert all(b & 0x80 for b in encoded[:-1])
        assert not encoded[-1] & 0x80
