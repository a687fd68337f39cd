"""Session-group membership for WebSocket consumers.

channels-redis drops a channel from a group `group_expiry` seconds after it joined, active or not, and
sockets here can live for days; so a consumer re-joins its session's group every hour while it is open.

Group events skip channels' per-message `aclose_old_connections()`: it is a trip to the database thread for
every event to every client (a streaming answer sends ~20 a second to each), while the event handlers
reach the database only through `database_sync_to_async`, which manages connections itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from orchestrator.events import CHANNEL_MESSAGE_TYPE

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 3600


class SessionGroupMember:
    """Mixed into a consumer: `await self.join_group(name)` on connect, `await self.leave_group()` on close;
    group events (`{"type": "session.event"}`) go to `session_event`."""

    group: str | None = None
    _group_refresh: asyncio.Task | None = None

    async def dispatch(self, message: dict) -> None:
        if message.get("type") == CHANNEL_MESSAGE_TYPE:
            await self.session_event(message)
            return
        await super().dispatch(message)

    async def join_group(self, group: str) -> None:
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        self._group_refresh = asyncio.ensure_future(self._refresh_group())

    async def leave_group(self) -> None:
        if self._group_refresh is not None:
            self._group_refresh.cancel()
            self._group_refresh = None
        if self.group is not None:
            group, self.group = self.group, None
            with contextlib.suppress(Exception):  # the layer may be the reason we are closing
                await self.channel_layer.group_discard(group, self.channel_name)

    async def _refresh_group(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
            except Exception:
                logger.warning("could not refresh membership of %s", self.group, exc_info=True)
