"""Wake-up messages to the orchestrator worker.

A wake-up only makes things fast; the database is the guarantee. If one is lost the executor still sees
the stop flag within HARNESS_STOP_POLL_SECONDS, and the worker's recovery scan still finds runs that
nobody drives. So sending one never fails the command that asked for it.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .events import publish, with_activity

logger = logging.getLogger(__name__)

ORCHESTRATOR_CHANNEL = "orchestrator"

RUN_START = "run.start"  # a new run: drive it
RUN_WAKE = "run.wake"  # something it waits on changed (an approval was decided): drive it again
RUN_STOP = "run.stop"  # stop requested: interrupt its executor (or drive a parked run to `stopped`)


async def send_wakeup(kind: str, run_id, channel: str = "") -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.send(channel or ORCHESTRATOR_CHANNEL, {"type": kind, "run_id": str(run_id)})
    except Exception:
        logger.warning("wake-up %s for run %s was not delivered; the database flag still holds", kind, run_id,
                       exc_info=True)


def wake_on_commit(kind: str, run_id, channel: str = "", *, session_id=None, events=(), started=None) -> None:
    """After commit: wake the executor and publish the command's events, in one hop to the event loop.

    The wake-up goes first: an executor waiting for it (a stop above all) should not wait for clients.
    `started`: the run a start command just created. If this process runs the worker, the run's first model
    request is sent before the wake-up, and the wake-up goes to this process's worker, which claims that
    request (engine/speculation.py).
    """
    from .engine import speculation
    from .engine.pool import local_pool

    events = with_activity(session_id, list(events)) if events else events

    async def deliver(first) -> None:
        target = channel
        pool = local_pool()
        if first is not None and pool is not None and pool.offer(run_id, *first):
            target = pool.channel_name  # this process's worker: it claims the request
        await send_wakeup(kind, run_id, target)
        if events:
            await publish(session_id, *events)

    def after_commit() -> None:
        first = speculation.read_first_request(started) if started is not None else None
        async_to_sync(deliver)(first)

    transaction.on_commit(after_commit)
