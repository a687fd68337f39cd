"""A run's first model request, sent while the steps before it are still committing.

A fresh run's model input is known the moment its executor takes the lease: the session's transcript with the
user's new message. The executor reads it in the same trip to the database (`RunExecutor._take`) and opens
the model's stream at once; provisioning, awaiting_assistant and the opening of the answer (one transaction,
see `step.CHAINED`) commit while the request is on the wire, so the first token waits for whichever is slower
rather than for both in turn.

Nothing the user sees changes: the answer's first delta is still published only after its message is
committed (assistant_streaming takes the stream over), and a stop that lands first still means no turn is
burnt, no answer is opened and the stream is closed (`discard`) as soon as the step that saw the stop has
committed. What a stop in those first milliseconds costs is a request the model server already received.

Earlier still, when the process that took the start command also runs a worker (`manage.py serve`, or a
worker process that serves HTTP): the start command reads the first request once its transaction has committed
(`read_first_request`, on the command's thread) and sends it before it wakes the worker (`ExecutorPool.offer`),
and the wake-up goes to this process's own worker, whose executor claims the stream when it takes the lease
(`ExecutorPool.claim`). The request is then on the wire while the lease is taken and the first transaction
commits. An offer nobody claims within EARLY_CLAIM_SECONDS (the wake-up was lost, another executor drives
the run) is discarded; the run is driven as it would have been.

Only the first turn of a run that nobody asked to stop, without MCP servers (their tools are listed after the
lease is taken), is speculated; every other model call is made by assistant_streaming as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from ..providers.base import ModelRequest, Provider, ProviderEvent

logger = logging.getLogger(__name__)

# How long a first request sent by the start command waits for its run's executor before it is discarded.
EARLY_CLAIM_SECONDS = 10.0

_ENDED = object()  # the stream ended before its first event


async def _first(stream: AsyncGenerator[ProviderEvent, None]) -> object:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return _ENDED


@dataclass
class Speculation:
    request: ModelRequest
    stream: AsyncGenerator[ProviderEvent, None]
    first: asyncio.Task

    @classmethod
    def start(cls, request: ModelRequest, stream: AsyncGenerator[ProviderEvent, None]) -> Speculation:
        """Open `stream` now: its first event (or error) is awaited by a task of its own."""
        return cls(request=request, stream=stream, first=asyncio.ensure_future(_first(stream)))

    async def events(self) -> AsyncIterator[ProviderEvent]:
        """The stream's events, the first one included, for the step that took the speculation over. Closing
        this iterator (or cancelling its consumer) closes the stream."""
        try:
            event = await self.first
            if event is _ENDED:
                return
            yield event
            async for event in self.stream:
                yield event
        finally:
            await self.discard()

    async def discard(self) -> None:
        """Cancel the request if it is still waiting for its first event, and close the stream. Bounded: a
        request that ignores its cancellation is left behind after the stop's grace, as preempted work is."""
        from .context import CANCEL_GRACE_SECONDS, cancel_until_done

        if not self.first.done() and not await cancel_until_done(self.first, grace=CANCEL_GRACE_SECONDS):
            logger.error("a speculated model request ignored its cancellation; leaving it behind")
            return  # (its stream cannot be closed while the task is inside it)
        if not self.first.cancelled():
            self.first.exception()  # retrieved: an error of a request nobody uses is not logged as lost
        with contextlib.suppress(RuntimeError):  # already closed, or closed by its own end
            await self.stream.aclose()


def fresh(run) -> bool:
    """A run whose first model request may be sent early: just started, and nobody asked to stop it."""
    from ..models import RunState

    return run.state == RunState.PROVISIONING and not run.stop_requested and run.turn_count == 0


def first_request(run, tools) -> ModelRequest | None:
    """A fresh run's first model request (None for any other run, with MCP servers configured, or if it cannot
    be read: only an optimisation, assistant_streaming reads it again and fails properly). Database errors
    propagate."""
    from dataclasses import replace

    from django.conf import settings
    from django.db import DatabaseError

    from .transcript import build_model_request

    if not fresh(run) or settings.HARNESS_MCP_CONFIG:
        return None
    try:
        return replace(build_model_request(run=run, tools=tools), turn=run.turn_count + 1)
    except DatabaseError:
        raise
    except Exception:
        logger.exception("run %s: its first model request could not be read ahead", run.pk)
        return None


def read_first_request(run) -> tuple[Provider, ModelRequest] | None:
    """A run just started (its transaction committed): its provider and first model request, to send before
    the worker is woken, if this process runs the worker that will drive it (`first_request`). None otherwise;
    any failure here leaves the executor to read the request itself."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    from ..providers.registry import provider_for
    from ..tools.registry import get_registry
    from .pool import local_pool

    if local_pool() is None:
        return None
    try:
        request = first_request(run, get_registry())
        return (provider_for(run.model or settings.HARNESS_MODEL), request) if request is not None else None
    except (ImproperlyConfigured, DatabaseError):
        return None  # the executor meets (and reports) the same problem
