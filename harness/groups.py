"""Session-group membership for WebSocket consumers.

channels-redis drops a channel from a group `group_expiry` seconds after it joined, active or not, and
sockets here can live for days; so a consumer re-joins its session's group every hour while it is open.

Group memberships live only in Redis. When Redis restarts (it keeps no data here) or is unreachable for a
while, every socket of this process has lost its membership or missed events, yet still answers pings: it
would stay open and deaf. `LayerWatch` notices within `LAYER_CHECK_SECONDS` of Redis answering again (a key
of ours that vanished, or a failed check) and closes those sockets with `CLOSE_RESYNC` (4503): clients
reconnect and take a fresh snapshot, which is the truth. (An application cannot send 1011 through Daphne:
Autobahn accepts only 1000 and 3000–4999 from it.)

Group events skip channels' per-message `aclose_old_connections()`: it is a trip to the database thread for
every event to every client (a streaming answer sends ~20 a second to each), while the event handlers
reach the database only through `database_sync_to_async`, which manages connections itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from orchestrator import metrics, permissions
from orchestrator.events import ACTIVITY_MESSAGE_TYPE, CHANNEL_MESSAGE_TYPE

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 3600
LAYER_CHECK_SECONDS = 0.5
LAYER_EPOCH_KEY = "harness:layer-epoch"
CLOSE_RESYNC = 4503  # "reconnect for a fresh snapshot": this socket's view can no longer be kept current
CLOSE_REVOKED = 4403  # the socket's user no longer has access to its session: do not reconnect


class LayerWatch:
    """One per process (on its event loop), while it has sockets and a Redis channel layer."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.members: weakref.WeakSet[SessionGroupMember] = weakref.WeakSet()
        self.task: asyncio.Task | None = None

    def add(self, member: SessionGroupMember) -> None:
        self.members.add(member)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=1)
        # Kept for the process's life once started, so the epoch outlives any one socket.
        epoch, lost = None, False
        try:
            while True:
                try:
                    await client.set(LAYER_EPOCH_KEY, uuid.uuid4().hex, nx=True)
                    current = await client.get(LAYER_EPOCH_KEY)
                except Exception:  # unreachable: whatever was published meanwhile did not reach our sockets
                    lost = True
                else:
                    # Every member joined while Redis answered (its group_add succeeded): a failed check
                    # since, or an epoch that changed (a restart lost our key), means it lost its events.
                    if lost or (epoch is not None and current != epoch):
                        await self._close_all()
                    epoch, lost = current, False
                await asyncio.sleep(LAYER_CHECK_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _close_all(self) -> None:
        members = list(self.members)
        logger.warning("the channel layer lost its state: closing %d socket(s) so they resync", len(members))
        for member in members:
            try:
                await member.close(code=CLOSE_RESYNC)
            except Exception:  # that socket is going anyway; the others must still be closed
                logger.warning("could not close a socket", exc_info=True)


_watches: dict[int, LayerWatch] = {}


def _layer_watch() -> LayerWatch | None:
    """This event loop's watch; None with the in-memory layer (it cannot lose state while we run)."""
    if not getattr(settings, "REDIS_URL", ""):
        return None
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _watches:
        _watches[loop_id] = LayerWatch(settings.REDIS_URL)
    return _watches[loop_id]


class SessionGroupMember:
    """Mixed into a consumer: `await self.join_group(name, session_id=, user=)` on connect,
    `await self.leave_group()` on close; group events (`{"type": "session.event"}`) go to `session_event`.
    `also`: more groups to join with it (the user's own, for the portal's sidebar); `session_id=None`: a socket
    on no session (nothing to re-check).

    An access change on the session (`events.access_changed_on_commit`: a member removed, a user deactivated or
    leaving a shared group, the session deleted) makes the socket re-read its user's role
    (`permissions.current_role`) and close with `CLOSE_REVOKED` if none is left."""

    group: str | None = None
    also: tuple[str, ...] = ()
    _access: tuple[str, object] | None = None  # (session id, user id) whose role keeps the socket open
    _group_refresh: asyncio.Task | None = None
    metrics_kind = "ws"  # the `kind` label of harness_ws_connections

    async def dispatch(self, message: dict) -> None:
        # Group messages skip Channels' per-message `aclose_old_connections()` (a trip to the database thread
        # before every handler): they come by the thousand, and their handlers reach the database through
        # `database_sync_to_async`, which closes stale connections itself.
        if message.get("type") == CHANNEL_MESSAGE_TYPE:
            await self.session_event(message)
            return
        if message.get("type") == ACTIVITY_MESSAGE_TYPE and hasattr(self, "sessions_activity"):
            await self.sessions_activity(message)
            return
        await super().dispatch(message)

    async def join_group(self, group: str, *, session_id, user, also: tuple[str, ...] = ()) -> None:
        self.group, self.also = group, tuple(also)
        self._access = (str(session_id), user.pk) if session_id is not None else None
        for name in (group, *self.also):
            await self.channel_layer.group_add(name, self.channel_name)
        self._group_refresh = asyncio.ensure_future(self._refresh_group())
        metrics.WS_CONNECTIONS.labels(kind=self.metrics_kind).inc()
        if (watch := _layer_watch()) is not None:
            watch.add(self)

    async def leave_group(self) -> None:
        if (watch := _layer_watch()) is not None:
            watch.members.discard(self)
        if self._group_refresh is not None:
            self._group_refresh.cancel()
            self._group_refresh = None
        if self.group is not None:
            metrics.WS_CONNECTIONS.labels(kind=self.metrics_kind).dec()
            groups, self.group, self.also = (self.group, *self.also), None, ()
            with contextlib.suppress(Exception):  # the layer may be the reason we are closing
                for group in groups:
                    await self.channel_layer.group_discard(group, self.channel_name)

    async def session_access(self, message: dict) -> None:
        if self.group is None or self._access is None:
            return
        session_id, user_id = self._access
        if await database_sync_to_async(permissions.current_role)(session_id=session_id, user_id=user_id) is None:
            await self.leave_group()
            await self.close(code=CLOSE_REVOKED)

    async def _refresh_group(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            for group in (self.group, *self.also):
                try:
                    await self.channel_layer.group_add(group, self.channel_name)
                except Exception:
                    logger.warning("could not refresh membership of %s", group, exc_info=True)
