"""Discovery responses assembled from bytes that were serialised once per resource.

A response is a handful of small fields around the resources. Each resource's encoded field
(tag, length, bytes) is computed once when the snapshot is built, so a push to any number of
streams only joins byte strings; nothing is re-serialised per stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

_LENGTH_DELIMITED = 2
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_TAGS = [varint((number << 3) | _LENGTH_DELIMITED) for number in range(16)]


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (string, bytes or message)."""
    tag = _TAGS[number] if number < 16 else varint((number << 3) | _LENGTH_DELIMITED)
    return tag + varint(len(payload)) + payload


@lru_cache(maxsize=64)
def any_type_url(type_url: str) -> bytes:
    """The ``type_url`` field of a ``google.protobuf.Any``, encoded once per type."""
    return field(1, type_url.encode())


def _text(number: int, value: str) -> bytes:
    return field(number, value.encode()) if value else b""


def sotw_response(version: str, type_url: str, nonce: str, resource_fields: Iterable[bytes]) -> bytes:
    """A serialised ``DiscoveryResponse``; ``resource_fields`` are pre-encoded field-2 ``Any`` entries."""
    return b"".join((_text(1, version), *resource_fields, _text(4, type_url), _text(5, nonce)))


def delta_response(system_version: str, type_url: str, nonce: str, resource_fields: Iterable[bytes],
                   removed: Iterable[str]) -> bytes:
    """A serialised ``DeltaDiscoveryResponse``; ``resource_fields`` are pre-encoded field-2 ``Resource`` entries."""
    return b"".join((_text(1, system_version), *resource_fields, _text(4, type_url),
                     *(field(6, name.encode()) for name in removed), _text(5, nonce)))
