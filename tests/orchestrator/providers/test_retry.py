"""Retries of a model call: only retryable errors, only before the first event, with backoff; a stop
cancels a pending retry at once."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.providers.base import ErrorKind, Finish, ModelRequest, ProviderError, TextDelta
from orchestrator.providers.retry import backoff_delay, stream_with_retries

REQUEST = ModelRequest(messages=(), tools=())


class FlakyProvider:
    """Fails its first calls with the given errors (optionally after yielding some text), then streams."""

    name = "flaky"

    def __init__(self, *failures: ProviderError, text_before_failure: str = "") -> None:
        self.failures = list(failures)
        self.text_before_failure = text_before_failure
        self.calls = 0

    async def stream(self, request):
        self.calls += 1
        if self.failures:
            if self.text_before_failure:
                yield TextDelta(self.text_before_failure)
            raise self.failures.pop(0)
        yield TextDelta("ok")
        yield Finish()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def collect(provider, *, retries=2, base_delay=1.0, max_wait=30.0, sleep=None):
    sleeps = sleep or Sleeps()
    events = [e async for e in stream_with_retries(provider, REQUEST, retries=retries, base_delay=base_delay,
                                                   max_wait=max_wait, sleep=sleeps)]
    return events, sleeps


async def test_retryable_errors_before_the_first_event_are_retried_with_exponential_backoff():
    provider = FlakyProvider(ProviderError("busy", kind=ErrorKind.SERVER_ERROR),
                             ProviderError("no route", kind=ErrorKind.CONNECT_FAILED))
    events, sleeps = await collect(provider, base_delay=0.5)
    assert events == [TextDelta("ok"), Finish()]
    assert provider.calls == 3 and sleeps.delays == [0.5, 1.0]


async def test_the_servers_retry_after_is_honoured():
    provider = FlakyProvider(ProviderError("slow down", kind=ErrorKind.RATE_LIMITED, retry_after=7.0))
    events, sleeps = await collect(provider)
    assert events[-1] == Finish() and sleeps.delays == [7.0]


async def test_a_retry_after_longer_than_the_limit_is_not_waited_for():
    provider = FlakyProvider(ProviderError("come back in an hour", kind=ErrorKind.RATE_LIMITED, retry_after=3600))
    with pytest.raises(ProviderError, match="come back in an hour"):
        await collect(provider, max_wait=30)
    assert provider.calls == 1


async def test_retries_are_limited():
    provider = FlakyProvider(*(ProviderError("busy", kind=ErrorKind.SERVER_ERROR) for _ in range(3)))
    with pytest.raises(ProviderError):
        await collect(provider, retries=2)
    assert provider.calls == 3


@pytest.mark.parametrize("kind", [ErrorKind.AUTHENTICATION, ErrorKind.BAD_REQUEST, ErrorKind.MALFORMED_STREAM,
                                  ErrorKind.IDLE_TIMEOUT])
async def test_errors_a_retry_cannot_fix_are_not_retried(kind):
    provider = FlakyProvider(ProviderError("no", kind=kind))
    with pytest.raises(ProviderError):
        await collect(provider)
    assert provider.calls == 1


async def test_no_retry_once_anything_has_streamed():
    provider = FlakyProvider(ProviderError("busy", kind=ErrorKind.SERVER_ERROR), text_before_failure="Hel")
    seen = []
    with pytest.raises(ProviderError):
        async for event in stream_with_retries(provider, REQUEST, retries=2, base_delay=0, max_wait=30,
                                               sleep=Sleeps()):
            seen.append(event)
    assert seen == [TextDelta("Hel")] and provider.calls == 1  # the user's text is never repeated


async def test_a_stop_cancels_a_pending_backoff_at_once():
    provider = FlakyProvider(ProviderError("busy", kind=ErrorKind.SERVER_ERROR))
    consumer = asyncio.ensure_future(collect(provider, base_delay=3600, max_wait=7200, sleep=asyncio.sleep))
    while provider.calls == 0:  # the first attempt has failed once the backoff sleep starts
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer, timeout=1.0)
    assert provider.calls == 1


def test_backoff_delay():
    error = ProviderError("x", kind=ErrorKind.SERVER_ERROR)
    assert [backoff_delay(error, n, 0.25) for n in range(3)] == [0.25, 0.5, 1.0]
    assert backoff_delay(ProviderError("x", retry_after=-3), 0, 1) == 0.0
