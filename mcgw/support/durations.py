"""Gateway API durations (GEP-2257): one grammar and one parser for the schema, the policies and Envoy.

A duration is one to four components of a number and a unit (``h``, ``m``, ``s``, ``ms``), read as Go's
``time.ParseDuration`` reads them: the components add up, in any order. :data:`GATEWAY_DURATION_PATTERN`
is the spec's own schema pattern (1-5 digits, at most four components); :func:`duration_ms` is laxer
about counts, so that every caller parses what the schema let through the same way.
"""

from __future__ import annotations

import re

GATEWAY_DURATION_PATTERN = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"

_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_DURATION = re.compile(r"(?:[0-9]+(?:ms|h|m|s))+")
_COMPONENT = re.compile(r"([0-9]+)(ms|h|m|s)")  # "ms" before "m", so that 5ms is not 5 minutes and an "s"


def duration_ms(value: str) -> int:
    """A Gateway API duration (``1h2m3s400ms``) in milliseconds; ``ValueError`` if it is not one."""
    if _DURATION.fullmatch(value) is None:
        raise ValueError(f"invalid duration {value!r}")
    return sum(int(number) * _UNITS_MS[unit] for number, unit in _COMPONENT.findall(value))


def seconds_and_nanos(value: str) -> tuple[int, int]:
    """A Gateway API duration as the seconds and nanos of a ``google.protobuf.Duration``."""
    seconds, millis = divmod(duration_ms(value), 1000)
    return seconds, millis * 1_000_000
