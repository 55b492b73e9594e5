"""Transient API answers are retried (honouring Retry-After); real errors are not."""

from __future__ import annotations

import pytest
from kubernetes.aio.client.exceptions import ApiException

from mcgw.providers.kubernetes import retry


def _error(status: int, retry_after: str | None = None) -> ApiException:
    error = ApiException(status=status, reason="test")
    error.headers = {"Retry-After": retry_after} if retry_after else {}
    return error


async def test_429_is_retried_after_the_servers_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []

    async def no_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", no_sleep)
    answers: list[object] = [_error(429, "1"), _error(503), "listed"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    assert await retry.with_retries(call, "list things") == "listed"
    assert delays[0] == 1.0  # Retry-After
    assert 0 < delays[1] <= 0.6  # backoff with jitter


async def test_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise _error(404)

    with pytest.raises(ApiException):
        await retry.with_retries(call, "get thing")
    assert calls == 1


async def test_gives_up_after_the_last_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr(retry.asyncio, "sleep", no_sleep)

    async def call() -> str:
        raise _error(429)

    with pytest.raises(ApiException) as failure:
        await retry.with_retries(call, "list", attempts=3)
    assert failure.value.status == 429
