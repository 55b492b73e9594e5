"""Gateway API durations: one parser for the policies and the Envoy translator, one schema pattern."""

from __future__ import annotations

import re

import pytest

from mcgw.support.durations import GATEWAY_DURATION_PATTERN, duration_ms, seconds_and_nanos
from mcgw.translate.routes import duration_fields


def test_components_add_up_in_any_order() -> None:
    assert [duration_ms(v) for v in ("0s", "5ms", "1h2m3s400ms", "400ms3s", "1m1m", "00060m")] == [
        0, 5, 3_723_400, 3_400, 120_000, 3_600_000]


def test_seconds_and_nanos_as_a_protobuf_duration_has_them() -> None:
    assert seconds_and_nanos("1m30s250ms") == (90, 250_000_000)
    assert duration_fields("1s500ms") == (1, 500_000_000)


@pytest.mark.parametrize("value", ["", "1", "ms", "1d", "1.5s", "-1s", " 1s", "1s\n", "1h 2m"])
def test_anything_else_is_refused_with_the_value_named(value: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid duration {value!r}")):
        duration_ms(value)
    with pytest.raises(ValueError, match=re.escape(f"invalid duration {value!r}")):
        duration_fields(value)


def test_whatever_the_schema_lets_through_parses() -> None:
    schema = re.compile(GATEWAY_DURATION_PATTERN)
    for value in ("99999h", "1h1m1s1ms", "1ms1s1m1h", "10s"):
        assert schema.fullmatch(value)
        duration_ms(value)
    assert not schema.fullmatch("1h1m1s1ms1h")  # five components: the schema's limit, not the parser's
