"""The orchestrator worker: a Channels consumer on the named channel `orchestrator`, and the `Worker` server
that runs it (in `manage.py serve`, and as `manage.py runworker orchestrator` when scaled out).

Handlers only hand work to this process's executor pool and return, so messages (a stop above all) never
wait behind a running turn. The channel layer is a fast, lossy notifier: when it is down (Redis
restarting) the worker keeps listening and retries, while runs carry on from the database — stops land
through the database flag, and recovery finds runs nobody drives.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from channels.worker import Worker

from .engine.pool import get_pool
from .wakeups import ORCHESTRATOR_CHANNEL

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)  # seconds between attempts to reach a lost channel layer


async def receive_retrying(layer, channel: str) -> dict:
    """`layer.receive`, waiting out a channel layer outage instead of dying with it."""
    attempt = 0
    while True:
        try:
            return await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            if attempt == 0:
                logger.warning("channel layer unreachable while receiving on %s; retrying", channel, exc_info=True)
            attempt += 1
            await asyncio.sleep(delay)


class OrchestratorConsumer(AsyncConsumer):
    async def __call__(self, scope, receive, send):
        # AsyncConsumer.__call__, except that receiving on our own channel survives a layer outage.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(receive_retrying, self.channel_layer, self.channel_name)
        self.base_send = send
        try:
            await await_many_dispatch([receive, self.channel_receive], self.dispatch)
        except StopConsumer:
            pass

    def _pool(self):
        pool = get_pool()
        # Leases taken (and renewed) from now on name this channel, so stops reach this consumer directly.
        pool.booted(self.channel_name)
        pool.start_background()
        return pool

    async def worker_boot(self, message: dict) -> None:
        self._pool()

    async def run_start(self, message: dict) -> None:
        self._pool().ensure_driving(message["run_id"])

    async def run_wake(self, message: dict) -> None:
        self._pool().ensure_driving(message["run_id"])

    async def run_stop(self, message: dict) -> None:
        pool = self._pool()
        pool.signal_stop(message["run_id"])
        # And drive it: a parked run (or one whose executor is just parking, or whose start wake-up this
        # beat) has nobody to act on the signal. A run already driven here is looked at again once its
        # executor has exited, so this never doubles an executor.
        pool.ensure_driving(message["run_id"])


class OrchestratorWorker(Worker):
    """A Channels worker that boots the orchestrator consumer at once (recovery and heartbeats start with
    the process, not with its first message) and keeps listening through channel layer outages."""

    async def handle(self) -> None:
        if ORCHESTRATOR_CHANNEL in self.channels:
            scope = {"type": "channel", "channel": ORCHESTRATOR_CHANNEL}
            await self.get_or_create_application_instance(ORCHESTRATOR_CHANNEL, scope).put({"type": "worker.boot"})
        await super().handle()

    async def listener(self, channel: str) -> None:
        while True:
            message = await receive_retrying(self.channel_layer, channel)
            if not message.get("type"):
                logger.warning("dropped a message without a type on %s", channel)
                continue
            scope = {"type": "channel", "channel": channel}
            await self.get_or_create_application_instance(channel, scope).put(message)
