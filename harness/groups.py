"""Session-group membership for WebSocket consumers.

channels-redis drops a channel from a group `group_expiry` seconds after it joined, active or not, and
sockets here can live for days; so a consumer re-joins its session's group every hour while it is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 3600


class SessionGroupMember:
    """Mixed into a consumer: `await self.join_group(name)` on connect, `await self.leave_group()` on close."""

    group: str | None = None
    _group_refresh: asyncio.Task | None = None

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
