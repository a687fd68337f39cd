"""Retrying a model call that failed before its first event (rate limits, server errors, failed connects).

Once anything has streamed, a retry would repeat text the user already saw, so the error stands. The
backoff sleeps inside the run's preemptible task: a stop cancels a pending retry at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from .base import ModelRequest, Provider, ProviderError, ProviderEvent

logger = logging.getLogger(__name__)


def backoff_delay(error: ProviderError, attempt: int, base_delay: float) -> float:
    """The server's retry-after when it gave one, else base · 2^attempt (attempt counts from 0)."""
    if error.retry_after is not None:
        return max(0.0, error.retry_after)
    return base_delay * (2**attempt)


async def stream_with_retries(
    provider: Provider,
    request: ModelRequest,
    *,
    retries: int,
    base_delay: float,
    max_wait: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[ProviderEvent]:
    attempt = 0
    while True:
        started = False
        try:
            async with aclosing(provider.stream(request)) as stream:
                async for event in stream:
                    started = True
                    yield event
            return
        except ProviderError as error:
            if started or not error.retryable or attempt >= retries:
                raise
            delay = backoff_delay(error, attempt, base_delay)
            if delay > max_wait:
                raise
            attempt += 1
            logger.info("model call failed before its first token (%s); retry %d/%d in %.1f s",
                        error.kind, attempt, retries, delay)
            await sleep(delay)
