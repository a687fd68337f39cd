"""What the HTTP providers (openai_chat.py, anthropic_messages.py) share: timeouts, the server's requested
wait, server messages fit for a transcript, and closing a response without ever holding up a stop."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx2

from .base import ModelTimeouts

logger = logging.getLogger(__name__)

Client = TypeVar("Client")

# Closing a response only tears down a socket; the bound is a guarantee that a stop can never hang on it.
CLOSE_TIMEOUT_SECONDS = 1.0
# A server's error text goes into the transcript: enough to act on, not a whole HTML error page.
MAX_SERVER_MESSAGE = 500
# Sending the request body and waiting for a pooled connection: generous, they are not the model's time.
WRITE_TIMEOUT_SECONDS = 30.0
POOL_TIMEOUT_SECONDS = 30.0


def http_timeout(timeouts: ModelTimeouts) -> httpx2.Timeout:
    """Per-phase limits: `read` bounds each read of the stream, so it is the idle timeout between chunks;
    there is no total (an answer may stream for minutes)."""
    return httpx2.Timeout(connect=timeouts.connect, read=timeouts.idle, write=WRITE_TIMEOUT_SECONDS,
                          pool=POOL_TIMEOUT_SECONDS)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date."""
    if (millis := _number(headers.get("retry-after-ms"))) is not None:
        return max(0.0, millis / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    if (seconds := _number(value)) is not None:
        return max(0.0, seconds)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def clip(text: str, limit: int = MAX_SERVER_MESSAGE) -> str:
    """A server's message on one line, cut at `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def close_response(response: Any, *, what: str) -> None:
    """Close an SDK stream's HTTP response (and so its connection) now, not whenever the garbage collector
    runs, without ever holding up the caller (a stop, or the end of the answer).

    On cancellation the SDK's HTTP layer has normally closed the connection already and this is a no-op.
    The close runs as a task of its own so that a second cancellation cannot cut it short, and is awaited at
    most CLOSE_TIMEOUT_SECONDS; it never replaces the exception that is propagating (CancelledError).
    """
    closing = asyncio.ensure_future(response.close())
    done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_SECONDS)
    if not done:
        logger.warning("closing a %s response took over %.1f s; left to finish in the background", what,
                       CLOSE_TIMEOUT_SECONDS)
    elif closing.exception() is not None:
        logger.warning("closing a %s response failed: %s", what, closing.exception())


class LoopClient(Generic[Client]):
    """An SDK client made inside the running event loop, and made anew when used from another loop.

    The client's connection pool belongs to the loop that opened its connections, and the registry keeps
    providers (so their clients) for the life of the process while loops may come and go (tests, management
    commands). The loop is held weakly: a dead loop must not be kept alive here.
    """

    def __init__(self, make: Callable[[], Client]) -> None:
        self._make = make
        self._client: Client | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def get(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is None or self._loop() is not loop:
            self._client = self._make()
            self._loop = weakref.ref(loop)
        return self._client

    async def aclose(self) -> None:
        """Release the pooled connections now (tests, shutdown); the next call opens new ones."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()
