"""Retrying Kubernetes API calls the server asks us to retry.

429 (priority-and-fairness throttling, or storage still initialising after a CRD install) and 5xx
answers are transient: wait as long as ``Retry-After`` says (or back off with jitter) and try again.
Anything else is the caller's to handle.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kubernetes.aio.client.exceptions import ApiException

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = frozenset({429, 500, 502, 503, 504})


def retry_after(error: ApiException) -> float | None:
    """The seconds the server's ``Retry-After`` header asks for; None when it sent none (or nonsense)."""
    headers = error.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


async def with_retries(call: Callable[[], Awaitable[T]], what: str, attempts: int = 6,
                       base_delay: float = 0.2, max_delay: float = 5.0) -> T:
    """Await ``call()``, retrying transient API errors; the last error is raised if every attempt fails."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ApiException as error:
            if error.status not in TRANSIENT or attempt == attempts:
                raise
            delay = retry_after(error) or min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.info("%s: API answered %s, retrying in %.1fs (attempt %d/%d)", what, error.status, delay, attempt,
                     attempts)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
