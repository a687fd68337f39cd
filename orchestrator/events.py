"""Every state change a client can see, defined once and published to the session's group.

Events are a fast, lossy notification: a client that missed some converges by taking a fresh snapshot
(`orchestrator.selectors.session_snapshot`). Publishing never fails a run; a full or unreachable channel
layer is logged and the database stays the truth.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import TERMINAL_STATES, RunState
from .providers.catalog import session_model

logger = logging.getLogger(__name__)

Event = dict[str, Any]

# Channel message type consumers handle (`def session_event(self, message)`).
CHANNEL_MESSAGE_TYPE = "session.event"


def session_group(session_id: Any) -> str:
    return f"session.{session_id}"


def run_state(*, run_id: Any, state: str, prev_state: str, turn_count: int, stop_requested: bool,
              started_by: str | None = None) -> Event:
    """`started_by` (a username): on a run's first state only (`prev_state` "", from `run_start`)."""
    event = {
        "type": "run.state", "run_id": str(run_id), "state": state, "prev_state": prev_state,
        "turn_count": turn_count, "stop_requested": stop_requested,
    }
    if started_by is not None:
        event["started_by"] = started_by
    return event


def message_delta(*, run_id: Any, message_id: int, offset: int, text: str, produced_at: float) -> Event:
    """`produced_at`: the server's time.time() when the delta was published (for measuring latency)."""
    return {"type": "message.delta", "run_id": str(run_id), "message_id": message_id, "offset": offset, "text": text,
            "produced_at": produced_at}


def message_completed(*, message: Any) -> Event:
    return {
        "type": "message.completed", "message_id": message.id, "run_id": str(message.run_id or ""),
        "role": message.role, "status": message.status, "text": message.text,
        "author": message.author.get_username() if message.author_id else None,
    }


def messages_superseded(*, message_ids: list[int], run_id: Any) -> Event:
    """An edit or a regeneration replaced these messages (run `run_id` replaces them): clients drop them."""
    return {"type": "messages.superseded", "message_ids": list(message_ids), "run_id": str(run_id)}


def function_started(*, call: Any) -> Event:
    return {"type": "function.started", "run_id": str(call.run_id), "call_id": call.call_id, "name": call.name,
            "status": call.status}


def function_finished(*, call: Any) -> Event:
    return {"type": "function.finished", "run_id": str(call.run_id), "call_id": call.call_id, "name": call.name,
            "status": call.status}


def function_finishing(*, call: Any) -> Event:
    """A must_finish tool keeps running after a stop; clients show "finishing <tool>…"."""
    return {"type": "function.finishing", "run_id": str(call.run_id), "call_id": call.call_id, "name": call.name}


def approval_requested(*, approval: Any, call: Any) -> Event:
    return {
        "type": "approval.requested", "approval_id": str(approval.id), "run_id": str(approval.run_id),
        "call_id": call.call_id, "name": call.name, "arguments": call.arguments,
        "expires_at": approval.expires_at.isoformat(),
    }


def approval_resolved(*, approval_id: Any, status: str, reason: str = "") -> Event:
    return {"type": "approval.resolved", "approval_id": str(approval_id), "status": status, "reason": reason}


def steering_changed(*, steering: Any) -> Event:
    return {"type": "steering.updated", "steering_id": str(steering.id), "run_id": str(steering.run_id),
            "status": steering.status, "text": steering.text, "reason": steering.reason,
            "created_by": steering.created_by.get_username() if steering.created_by_id else None}


def session_updated(*, session: Any) -> Event:
    return {"type": "session.updated", "session_id": str(session.id), "title": session.title,
            "model": session_model(session.model), "updated_at": session.updated_at.isoformat()}


def run_finished(*, run: Any) -> Event:
    return {"type": "run.finished", "run_id": str(run.id), "outcome": run.outcome, "receipt": run.receipt}


# --- session lists (the portal's sidebar) ------------------------------------------------------------------
# When a session's listing changes (a run starts, parks on an approval, is being stopped or ends; a rename, an
# archive), its owner and members hear it on their own group, `user.<id>`, whatever page they have open, as
# `{"type": "sessions.activity", "session_id": ...}`. Portal-only: never sent to a session's group, so JSON
# clients do not see it. The audience is read by the code that emits the events, inside their transaction
# (`with_activity`), and published with them after the commit.
ACTIVITY_MESSAGE_TYPE = "sessions.activity"


def user_group(user_id: Any) -> str:
    return f"user.{user_id}"


def run_badge(state: str, stop_requested: bool) -> str:
    """What a session list shows of a run: "" (no live run), "running", "approval" or "stopping"."""
    if not state or state in TERMINAL_STATES:
        return ""
    if stop_requested:
        return "stopping"
    return "approval" if state == RunState.AWAITING_APPROVAL else "running"


def _changes_listing(event: Event) -> bool:
    if event["type"] == "run.state":
        prev, stop = event["prev_state"], event["stop_requested"]
        # A start, a stop recorded (state == prev_state), or a badge that differs.
        return not prev or prev == event["state"] or run_badge(prev, stop) != run_badge(event["state"], stop)
    return event["type"] in ("run.finished", "session.updated")


def with_activity(session_id: Any, emitted: list[Event]) -> list[Event]:
    """`emitted`, plus the announcement to the session's audience (`permissions.session_audience`, one query)
    if one of them changes the session's listing. Call it inside the transaction that emits them."""
    if session_id is None or not any(_changes_listing(event) for event in emitted):
        return emitted
    return [*emitted, _activity(session_id)]


def activity_on_commit(session_id: Any) -> None:
    """The session's listing changed with no event of its own (a member added): once the surrounding
    transaction commits, its audience hears it."""
    publish_on_commit(session_id, _activity(session_id))


def _activity(session_id: Any) -> Event:
    from .permissions import session_audience  # (permissions → services → events)

    return {"type": ACTIVITY_MESSAGE_TYPE, "session_id": str(session_id), "users": session_audience(session_id)}


async def publish(session_id: Any, *events: Event) -> None:
    layer = get_channel_layer()
    if layer is None or not events:
        return
    try:
        for event in events:
            if event["type"] == ACTIVITY_MESSAGE_TYPE:  # (`with_activity`) to its users' groups only
                # One id per announcement: a user's sockets in one process render it once between them.
                message = {"type": ACTIVITY_MESSAGE_TYPE, "session_id": event["session_id"], "id": uuid.uuid4().hex}
                for user_id in event["users"]:
                    await layer.group_send(user_group(user_id), message)
                continue
            await layer.group_send(session_group(session_id), {"type": CHANNEL_MESSAGE_TYPE, "event": event})
    except Exception:  # the layer is an optimisation; never let it fail a run
        logger.warning("could not publish %d event(s) for session %s", len(events), session_id, exc_info=True)


def publish_on_commit(session_id: Any, *events: Event) -> None:
    """From synchronous service code: publish once the surrounding transaction has committed."""
    events = tuple(with_activity(session_id, list(events)))
    transaction.on_commit(lambda: async_to_sync(publish)(session_id, *events))


# Channel message type telling a session's sockets that access to it changed (a member removed, a group
# membership or a user deactivated, the session deleted): each re-checks its user's role and closes if gone.
# Not an event clients see.
ACCESS_MESSAGE_TYPE = "session.access"


async def publish_access_changed(*session_ids: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for session_id in session_ids:
            await layer.group_send(session_group(session_id), {"type": ACCESS_MESSAGE_TYPE})
    except Exception:  # sockets also re-check on their next command; the layer is an optimisation
        logger.warning("could not announce an access change to %d session(s)", len(session_ids), exc_info=True)


def access_changed_on_commit(*session_ids: Any) -> None:
    """From synchronous code: once the surrounding transaction commits, make the sessions' sockets re-check."""
    ids = [str(s) for s in session_ids]
    if ids:
        transaction.on_commit(lambda: async_to_sync(publish_access_changed)(*ids))
