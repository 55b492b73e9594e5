"""Timestamps as Kubernetes writes them: RFC 3339 in UTC with a ``Z``.

Conditions, Leases, logs and ``/api/status`` all format times here, so they agree on one shape.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Literal

FractionDigits = Literal[0, 3, 6]


def rfc3339(seconds: float | None = None, *, fraction: FractionDigits = 0) -> str:
    """Wall-clock ``seconds`` (now if None) as ``2026-01-02T03:04:05Z``, with ``fraction`` digits of the second.

    Conditions' ``lastTransitionTime`` takes whole seconds, log lines milliseconds, and a Lease's
    MicroTime exactly six digits. Extra digits are cut, not rounded, so a time never moves forward.
    """
    moment = dt.datetime.fromtimestamp(time.time() if seconds is None else seconds, dt.UTC)
    whole = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not fraction:
        return f"{whole}Z"
    digits = f"{moment.microsecond:06d}"[:fraction]
    return f"{whole}.{digits}Z"
