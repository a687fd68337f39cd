"""The session page's WebSocket: a snapshot of every live part on connect, then one fragment per event.

Fragments are out-of-band HTML (htmx swaps each top-level element by id). A tab that missed events —
asleep, offline, the server restarted — reconnects and gets a fresh snapshot, so it converges to the truth.
Streaming text is kept contiguous per tab by `harness.streaming.StreamTracker`: nothing is appended twice,
and a tab that joins mid-stream has its gap filled from the checkpoint. It is shown as Markdown, rendered at
a bounded rate by `LiveAnswers`; a finished answer is rendered whole, as a fresh page load shows it.
Who else is on the page ("Here now") is kept by the sockets themselves over the channel layer (`presence.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from orchestrator import events, selectors
from orchestrator.models import Session

from harness.groups import SessionGroupMember
from harness.streaming import GAP, StreamTracker

from . import fragments
from .live_answers import LiveAnswers
from .presence import BEAT_SECONDS, GONE, HERE, Presence, gone_message, here_message, presence_group
from .sidebar import SidebarListener

logger = logging.getLogger(__name__)


class PortalConsumer(SidebarListener, SessionGroupMember, AsyncWebsocketConsumer):
    metrics_kind = "portal"
    session: Session | None = None
    oldest_sent: int | None = None  # the oldest message of the transcript page the snapshot sent
    answers: LiveAnswers | None = None  # (touched on the event loop only: it holds the loop's timers)
    watching = False  # a viewer's tab: the composer shows the run's mode but offers no send or stop
    presence: Presence | None = None  # who else has the page open (harness/portal/presence.py)
    _presence_beat: asyncio.Task | None = None

    async def connect(self) -> None:
        await self.accept()  # before any close, so the client sees our close code, not a failed handshake
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        self.session = await database_sync_to_async(selectors.session_for_user)(session_id=session_id, user=user)
        if self.session is None:
            await self.close(code=4404)
            return
        self.tracker = StreamTracker()
        self.answers = LiveAnswers(self._send_quietly)
        # The user's group too: the sidebar's badges (harness/portal/sidebar.py).
        await self.join_group(events.session_group(self.session.id), session_id=self.session.id, user=user,
                              also=(events.user_group(user.pk),))
        await self._presence_join(user.get_username())
        html, streams = await database_sync_to_async(self._snapshot)()
        self.answers.watch(streams)
        # Who is here goes with the snapshot; the others' answers to our announcement (handled once connect
        # returns) update it.
        await self.send(text_data=html + fragments.presence_html(self.presence.users(), oob=True))

    async def disconnect(self, code: int) -> None:
        if self.answers is not None:
            self.answers.close()
        await self.leave_group()

    async def leave_group(self) -> None:
        """Also when access is taken away (`SessionGroupMember.session_access`): the others see us go at once."""
        await self._presence_leave()
        await super().leave_group()

    # --- presence: who has the page open -------------------------------------------------------------------
    async def dispatch(self, message: dict) -> None:
        # Presence messages touch no database: no per-message connection clean-up (a trip to the db thread).
        if message.get("type") == HERE:
            await self.presence_here(message)
        elif message.get("type") == GONE:
            await self.presence_gone(message)
        else:
            await super().dispatch(message)

    async def _presence_join(self, username: str) -> None:
        self.presence = Presence(channel=self.channel_name, user=username)
        await self.channel_layer.group_add(presence_group(self.session.id), self.channel_name)
        await self._announce(ask=True)  # the others record us and answer with themselves
        self._presence_beat = asyncio.ensure_future(self._beat())

    async def _presence_leave(self) -> None:
        if self._presence_beat is not None:
            self._presence_beat.cancel()
            self._presence_beat = None
        if self.presence is None:
            return
        self.presence, group = None, presence_group(self.session.id)
        with contextlib.suppress(Exception):  # the layer may be the reason we are closing
            await self.channel_layer.group_send(group, gone_message(channel=self.channel_name))
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _announce(self, *, ask: bool) -> None:
        await self.channel_layer.group_send(
            presence_group(self.session.id),
            here_message(channel=self.channel_name, user=self.presence.user, ask=ask),
        )

    async def _beat(self) -> None:
        """Say we are still here (and stay in the group: channels-redis expires members); forget the silent."""
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                await self.channel_layer.group_add(presence_group(self.session.id), self.channel_name)
                await self._announce(ask=False)
            except Exception:
                logger.warning("could not announce presence on session %s", self.session.id, exc_info=True)
            if self.presence is not None and self.presence.prune():
                await self._send_presence()

    async def presence_here(self, message: dict) -> None:
        if self.presence is None or message["channel"] == self.channel_name:
            return
        changed = self.presence.here(message["channel"], message["user"])
        if message.get("ask"):  # a page just opened: tell it we are here (to it alone)
            with contextlib.suppress(Exception):
                await self.channel_layer.send(
                    message["channel"], here_message(channel=self.channel_name, user=self.presence.user, ask=False))
        if changed:
            await self._send_presence()

    async def presence_gone(self, message: dict) -> None:
        if self.presence is not None and self.presence.gone(message["channel"]):
            await self._send_presence()

    async def _send_presence(self) -> None:
        if self.presence is not None:
            await self._send_quietly(fragments.presence_html(self.presence.users(), oob=True))

    async def _send_quietly(self, html: str) -> None:
        """A send that may find the socket closed (the browser left while an event or a timer was on its way):
        nothing to do then, its disconnect cleans up."""
        try:
            await self.send(text_data=html)
        except Exception:  # noqa: BLE001 - a closed socket; its disconnect cleans up
            logger.debug("portal socket closed before a rendered delta could be sent", exc_info=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Commands go over HTTP (hx-post); anything sent here is ignored."""

    async def session_event(self, message: dict) -> None:
        event = message["event"]
        try:
            if event["type"] == "message.delta":
                html = await self._answer_delta(event)
            else:
                if event["type"] == "message.completed":
                    self.answers.finish(event["message_id"])  # the whole message follows: no more renders
                html = await database_sync_to_async(self._fragments_for)(event)
        except Exception:  # a rendering bug must not drop the page's socket; the next snapshot heals it
            logger.exception("could not render %s for session %s", event.get("type"), self.session.id)
            return
        if html:
            await self._send_quietly(html)

    async def _answer_delta(self, event: dict) -> str:
        message_id = event["message_id"]
        # The common case of a streaming answer, ~20 times a second: no database, so no thread hop.
        piece = self.tracker.append(event) if self.tracker.knows(message_id) else GAP
        appended = ""
        if piece is GAP:  # a new answer, or a hole only the checkpoint can fill: both read the database
            appended, piece = await database_sync_to_async(self._catch_up)(event)
        return appended + (self.answers.add(message_id, piece[1]) if piece else "")

    # --- rendering (on the database thread) ---------------------------------------------------------

    def _snapshot(self) -> tuple[str, dict]:
        # One read for both: the tracker must know exactly the messages the snapshot shows. Read apart, a
        # message committed in between (the engine writes from its own thread) was shown by the snapshot
        # and then appended a second time by its message.completed event.
        # Only the newest page is sent (older messages are the page's to ask for): exactly those are held.
        page = selectors.transcript_page(self.session)
        self.tracker.hold_all((m.id, m.text) for m in page[0])
        self.oldest_sent = page[0][0].id if page[0] else None
        streams = {}
        self.watching = not selectors.user_can_act(self.session, self.scope["user"])
        return fragments.snapshot_html(self.session, page=page, streams=streams, watching=self.watching), streams

    def _fragments_for(self, event: dict) -> str:
        kind = event["type"]
        if kind == "message.completed":
            return self._message(event["message_id"])
        if kind == "messages.superseded":
            return fragments.superseded_html(event["message_ids"])
        run = selectors.latest_run(self.session.id)
        if kind in ("run.state", "run.finished"):
            parts = [fragments.composer_html(self.session, run, oob=True, watching=self.watching),
                     fragments.run_status_html(self.session, run, oob=True),
                     # The steer form follows the run: it appears when a run starts and goes when it ends.
                     fragments.steering_html(self.session, run, oob=True)]
            if kind == "run.finished":
                parts.append(fragments.approvals_html(self.session, oob=True))
            if kind == "run.state" and not event["prev_state"]:
                parts.append(fragments.receipt_panel_html())  # a new run: the last run's receipt is stale
            return "".join(parts)
        if kind == "function.started":
            return fragments.run_status_html(self.session, run, activity=f"running {event['name']}…", oob=True)
        if kind == "function.finishing":
            return fragments.run_status_html(self.session, run, activity=f"finishing {event['name']}…", oob=True)
        if kind == "function.finished":
            return fragments.run_status_html(self.session, run, oob=True)
        if kind in ("approval.requested", "approval.resolved"):
            return fragments.approvals_html(self.session, oob=True)
        if kind == "session.updated":
            return fragments.session_title_html(event["title"]) + fragments.model_picker_html(
                self.session.id, event["model"], oob=True
            )
        if kind == "steering.updated":
            return fragments.steering_html(self.session, run, oob=True)
        return ""

    def _message(self, message_id: int) -> str:
        message = selectors.message_with_call(message_id)
        if message is None:
            return ""
        # A message older than the snapshot's page is not new: it is replaced where the tab has it (if it loaded
        # that older page), never appended at the end.
        known = self.tracker.knows(message_id) or (self.oldest_sent is not None and message_id < self.oldest_sent)
        self.tracker.hold(message_id, len(message.text))
        return fragments.message_html(message, oob=True) if known else fragments.message_append_html(message)

    def _catch_up(self, event: dict) -> tuple[str, tuple[int, str] | None]:
        """(the new answer's empty message to append, or "", and the text to add to it)."""
        message_id = event["message_id"]
        appended = ""
        if not self.tracker.knows(message_id):
            # The first delta of a new answer: show its (empty) message, then add to it.
            message = selectors.message_with_call(message_id)
            if message is None:
                return "", None
            message.text, message.status = "", "streaming"  # what this tab holds: message.completed follows
            self.tracker.hold(message_id, 0)
            appended = fragments.message_append_html(message)
        piece = self.tracker.append(event)
        if piece is GAP:
            piece = self.tracker.fill_gap(event)
        return appended, piece
