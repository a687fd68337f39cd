"""orchestrator/events.py, called directly: the exact shape of every event a client can see (ids as
strings, nothing missing or extra), the session's group name, and publishing — to the session's group,
only after a commit, and never failing the caller when the channel layer does.

Events are built from unsaved model instances where the database has no part in the output.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from orchestrator import events
from orchestrator.models import Approval, FunctionCall, Message, Run, Session, SteeringMessage

RUN_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")
SESSION_ID = uuid.UUID("66666666-7777-8888-9999-000000000000")
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_sessions_group_is_named_after_it():
    assert events.session_group(SESSION_ID) == "session.66666666-7777-8888-9999-000000000000"
    assert events.session_group("abc") == "session.abc"


def test_run_state():
    event = events.run_state(run_id=RUN_ID, state="function_execute", prev_state="function_prepare", turn_count=2,
                             stop_requested=True)
    assert event == {"type": "run.state", "run_id": str(RUN_ID), "state": "function_execute",
                     "prev_state": "function_prepare", "turn_count": 2, "stop_requested": True}


def test_message_delta_carries_the_offset_and_the_time_it_was_produced():
    event = events.message_delta(run_id=RUN_ID, message_id=7, offset=12, text=" world", produced_at=1234.5)
    assert event == {"type": "message.delta", "run_id": str(RUN_ID), "message_id": 7, "offset": 12, "text": " world",
                     "produced_at": 1234.5}


def test_message_completed():
    message = Message(id=7, run_id=RUN_ID, role="assistant", status="stopped", text="half an answer")
    assert events.message_completed(message=message) == {
        "type": "message.completed", "message_id": 7, "run_id": str(RUN_ID), "role": "assistant",
        "status": "stopped", "text": "half an answer", "author": None,
    }


def test_message_completed_of_a_message_outside_any_run_has_an_empty_run_id():
    message = Message(id=8, run_id=None, role="system", status="complete", text="a notice")
    assert events.message_completed(message=message)["run_id"] == ""


def test_messages_superseded_names_the_messages_and_the_run_that_replaces_them():
    assert events.messages_superseded(message_ids=(7, 8, 9), run_id=RUN_ID) == {
        "type": "messages.superseded", "message_ids": [7, 8, 9], "run_id": str(RUN_ID),
    }


def test_function_events():
    call = FunctionCall(run_id=RUN_ID, call_id="call_t1_0", name="shell", status="running")
    common = {"run_id": str(RUN_ID), "call_id": "call_t1_0", "name": "shell"}
    assert events.function_started(call=call) == {"type": "function.started", **common, "status": "running"}
    call.status = "succeeded"
    assert events.function_finished(call=call) == {"type": "function.finished", **common, "status": "succeeded"}
    assert events.function_finishing(call=call) == {"type": "function.finishing", **common}  # no status


def test_approval_requested():
    call = FunctionCall(run_id=RUN_ID, call_id="call_t1_0", name="shell", arguments={"command": "ls"})
    approval = Approval(run_id=RUN_ID, expires_at=WHEN)
    assert events.approval_requested(approval=approval, call=call) == {
        "type": "approval.requested", "approval_id": str(approval.id), "run_id": str(RUN_ID),
        "call_id": "call_t1_0", "name": "shell", "arguments": {"command": "ls"},
        "expires_at": "2026-01-02T03:04:05+00:00",
    }


def test_approval_resolved_has_an_empty_reason_unless_given():
    approval_id = uuid.uuid4()
    assert events.approval_resolved(approval_id=approval_id, status="approved") == {
        "type": "approval.resolved", "approval_id": str(approval_id), "status": "approved", "reason": "",
    }
    assert events.approval_resolved(approval_id=approval_id, status="swept", reason="run_stopped")["reason"] == (
        "run_stopped"
    )


def test_steering_changed():
    steering = SteeringMessage(run_id=RUN_ID, text="be brief", status="discarded", reason="run_stopped")
    assert events.steering_changed(steering=steering) == {
        "type": "steering.updated", "steering_id": str(steering.id), "run_id": str(RUN_ID), "status": "discarded",
        "text": "be brief", "reason": "run_stopped", "created_by": None,
    }


def test_session_updated_names_the_model_the_next_run_uses(settings):
    settings.HARNESS_MODEL = "scripted"
    session = Session(id=SESSION_ID, title="Fix the build", model="", updated_at=WHEN)
    assert events.session_updated(session=session) == {
        "type": "session.updated", "session_id": str(SESSION_ID), "title": "Fix the build", "model": "scripted",
        "updated_at": "2026-01-02T03:04:05+00:00",
    }
    session.model = "openai:gpt-x"
    assert events.session_updated(session=session)["model"] == "openai:gpt-x"


def test_run_finished_carries_the_receipt():
    run = Run(id=RUN_ID, outcome="stopped", receipt={"outcome": "stopped", "turns": 2})
    assert events.run_finished(run=run) == {
        "type": "run.finished", "run_id": str(RUN_ID), "outcome": "stopped",
        "receipt": {"outcome": "stopped", "turns": 2},
    }


# --- publishing --------------------------------------------------------------------------------------------


async def listening(session_id) -> str:
    """A channel in the session's group, as a connected client's consumer is."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.session_group(session_id), channel)
    return channel


async def received(channel: str) -> dict:
    return await asyncio.wait_for(get_channel_layer().receive(channel), timeout=5)


def queued(channel: str) -> int:
    queue = get_channel_layer().channels.get(channel)
    return 0 if queue is None else queue.qsize()


async def test_publish_sends_each_event_to_the_sessions_group_in_order():
    mine, elsewhere = await listening(SESSION_ID), await listening(uuid.uuid4())
    first = events.approval_resolved(approval_id="a", status="approved")
    second = events.run_finished(run=Run(id=RUN_ID, outcome="completed", receipt={}))
    await events.publish(SESSION_ID, first, second)
    assert await received(mine) == {"type": events.CHANNEL_MESSAGE_TYPE, "event": first}
    assert await received(mine) == {"type": events.CHANNEL_MESSAGE_TYPE, "event": second}
    assert queued(mine) == 0 and queued(elsewhere) == 0


async def test_publishing_nothing_sends_nothing():
    channel = await listening(SESSION_ID)
    await events.publish(SESSION_ID)
    assert queued(channel) == 0


async def test_a_failing_channel_layer_is_logged_and_never_raised(monkeypatch, caplog):
    async def unreachable(group, message):
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", unreachable)
    with caplog.at_level(logging.WARNING, logger="orchestrator.events"):
        await events.publish(SESSION_ID, events.approval_resolved(approval_id="a", status="approved"))
    assert f"could not publish 1 event(s) for session {SESSION_ID}" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_publish_on_commit_waits_for_the_commit_and_drops_with_a_rollback():
    channel = await listening(SESSION_ID)
    kept = events.approval_resolved(approval_id="kept", status="approved")
    dropped = events.approval_resolved(approval_id="dropped", status="denied")

    def commit_then_roll_back() -> int:
        with transaction.atomic():
            events.publish_on_commit(SESSION_ID, kept)
            before_commit = queued(channel)
        try:
            with transaction.atomic():
                events.publish_on_commit(SESSION_ID, dropped)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        return before_commit

    assert await sync_to_async(commit_then_roll_back, thread_sensitive=False)() == 0
    assert await received(channel) == {"type": events.CHANNEL_MESSAGE_TYPE, "event": kept}
    assert queued(channel) == 0
