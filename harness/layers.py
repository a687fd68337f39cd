"""The embedded channel layer: channels' InMemoryChannelLayer, with its expiry sweep amortised.

The stock layer runs `_clean_expired()` — a walk over every channel's queue and every group's members — on
every `receive()` and every `group_send()`. With a few hundred sockets each receiving ~20 streaming deltas a
second that walk is quadratic, and it was the largest single cost of streaming in one process
(bench/stream_fanout.py). Messages expire after 60 s and group memberships after a day, so sweeping at most
once a second changes nothing anyone can observe.
"""

from __future__ import annotations

import time

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
