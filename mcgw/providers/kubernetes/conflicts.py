"""Writes that lose a race (409 Conflict: someone wrote the object since we read it) are done again.

Both writers use this: the status writer for Gateway API statuses, the MCS writer for ServiceExport
status, ServiceImports and imported EndpointSlices. The same attempt limit holds for all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from kubernetes.aio.client.exceptions import ApiException

from mcgw.providers.kubernetes.status_merge import stored_generation_is_newer
from mcgw.support.timestamps import rfc3339

T = TypeVar("T")
CONFLICT_ATTEMPTS = 5

# What ``update_status`` did: wrote it, found it already up to date, found a status of a newer
# generation (left alone), or found the object gone.
StatusUpdate = Literal["written", "unchanged", "newer", "gone"]


async def retry_conflicts(attempt: Callable[[int], Awaitable[T]], what: str,
                          on_conflict: Callable[[], None] | None = None) -> T:
    """``attempt(n)`` until it gets through without a 409; ``n`` counts from 0, so a retry knows to read afresh."""
    for number in range(CONFLICT_ATTEMPTS):
        try:
            return await attempt(number)
        except ApiException as error:
            if error.status != 409:
                raise
            if on_conflict is not None:
                on_conflict()
    raise RuntimeError(f"gave up {what} after {CONFLICT_ATTEMPTS} conflicts")


async def update_status(read: Callable[[], Awaitable[dict[str, Any] | None]],
                        replace: Callable[[dict[str, Any]], Awaitable[object]],
                        merge: Callable[[dict[str, Any], str], dict[str, Any]], generation: int, what: str, *,
                        on_conflict: Callable[[], None] | None = None) -> StatusUpdate:
    """Read the object, merge our status into its stored one, and replace the object only if that changed it.

    ``read`` returns the object with its status (None if it is gone); ``merge(stored, now)`` returns the
    merged status; ``generation`` is the one our status describes, so a stored status that already
    describes a newer one is left alone. A conflict reads again and merges again.
    """
    async def attempt(_number: int) -> StatusUpdate:
        stored_object = await read()
        if stored_object is None:
            return "gone"
        stored = stored_object.get("status") or {}
        if stored_generation_is_newer(stored, generation):
            return "newer"
        merged = merge(stored, rfc3339())
        if merged == stored:
            return "unchanged"
        await replace({**stored_object, "status": merged})
        return "written"

    return await retry_conflicts(attempt, f"writing status of {what}", on_conflict)
