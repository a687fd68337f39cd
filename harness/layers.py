"""The embedded channel layer: channels' InMemoryChannelLayer, with its expiry sweep amortised.

The stock layer runs `_clean_expired()` — a walk over every channel's queue and every group's members — on
every `receive()` and every `group_send()`. With a few hundred sockets each receiving ~20 streaming deltas a
second that walk is quadratic, and it was the largest single cost of streaming in one process
(bench/stream_fanout.py). Messages expire after 60 s and group memberships after a day, so sweeping at most
once a second changes nothing anyone can observe.

Its `group_send` also made a task per member and waited on them with `asyncio.as_completed` (a queue and a
callback per member): ~9 % of the event loop with 200 streams watched from two sockets each. A send to the
in-memory layer never waits (it puts on an unbounded-enough queue or raises `ChannelFull` at once), so the
members are sent to one after the other instead, with the same outcome.
"""

from __future__ import annotations

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

SWEEP_EVERY_SECONDS = 1.0


class AmortisedInMemoryChannelLayer(InMemoryChannelLayer):
    _last_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_SECONDS:
            return
        self._last_sweep = now
        super()._clean_expired()

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass  # as the stock layer: a full channel misses this message
