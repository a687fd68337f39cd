"""The JSON WebSocket API's contract (docs/api.md, "JSON WebSocket API"), through the project's real ASGI
application (routing, TokenAuthMiddleware, the consumer) and, where runs must progress, the real worker.

Nothing here sleeps to synchronise: every wait is a receive with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from harness import client_commands
from harness.asgi import application
from harness.ws_api import reducer
from orchestrator import events, selectors
from orchestrator.models import (
    ApiToken,
    Approval,
    ApprovalStatus,
    CallStatus,
    Message,
    Run,
    Session,
    SteeringMessage,
)
from orchestrator.providers.scripted import FILLER
from orchestrator.services.runs import run_start
from orchestrator.services.sessions import session_create
from orchestrator.services.tokens import api_token_create
from tests.factories import park_on_approval
from tests.helpers import db, script, shell_script, start, wait_terminal, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LONG_STREAM = {"words": 5000, "delay_ms": 5}  # ~25 s if nobody stops it
SHELL_THEN_TEXT = shell_script("echo hi", {"text": "the shell said hi and that is all", "delay_ms": 15})
Frame = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------------------


def api_path(session_id: Any) -> str:
    return f"/ws/api/sessions/{session_id}/"


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + token.encode())]


@asynccontextmanager
async def open_socket(session_id: Any, token: str):
    """A connected, authenticated socket, with its snapshot frame already read."""
    communicator = WebsocketCommunicator(application, api_path(session_id), headers=bearer(token))
    try:
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        snapshot = await communicator.receive_json_from(timeout=5)
        assert snapshot["type"] == "session.snapshot"
        yield communicator, snapshot
    finally:
        await communicator.disconnect()


async def receive_until(communicator, predicate: Callable[[Frame], bool], *, timeout: float = 10.0) -> list[Frame]:
    """Every frame up to and including the first one `predicate` accepts, within one deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames: list[Frame] = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out; received {[f['type'] for f in frames]}")
        frame = await communicator.receive_json_from(timeout=remaining)
        frames.append(frame)
        if predicate(frame):
            return frames


def of_type(kind: str, **fields: Any) -> Callable[[Frame], bool]:
    return lambda frame: frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items())


async def request(communicator, frame: Frame, *, timeout: float = 5.0) -> tuple[Frame, list[Frame]]:
    """Send a frame; return its answer (a `.result` or an `error`) and the events received before it."""
    await communicator.send_json_to(frame)
    frames = await receive_until(
        communicator, lambda f: f["type"] == "error" or f["type"].endswith(".result"), timeout=timeout
    )
    return frames[-1], frames[:-1]


async def assert_still_open(communicator, request_id: Any = "still-open") -> None:
    """A ping is answered: the socket survived whatever came before."""
    answer, _ = await request(communicator, {"type": "ping", "request_id": request_id})
    assert answer == {"type": "ping.result", "request_id": request_id}


async def snapshot_of(session_id) -> dict:
    return await db(lambda: selectors.session_snapshot(Session.objects.get(pk=session_id)))


def rebuild(deltas: list[Frame]) -> str:
    """Deltas of one message, merged by offset; asserts they are contiguous (nothing lost on this path)."""
    text = ""
    for delta in deltas:
        assert delta["offset"] == len(text), (delta["offset"], len(text))
        text += delta["text"]
    return text


# --- connecting ------------------------------------------------------------------------------------------


async def test_the_first_frame_is_the_snapshot_the_http_api_returns(session, user, token):
    await start(session, user, "hello there")  # no worker: the run stays in provisioning, live
    async with open_socket(session.id, token) as (communicator, snapshot):
        http = await db(lambda: Client().get(f"/api/sessions/{session.id}", HTTP_AUTHORIZATION=f"Bearer {token}"))
        assert http.status_code == 200
        assert snapshot == {"type": "session.snapshot", **http.json()}
        assert snapshot == {"type": "session.snapshot", **await snapshot_of(session.id)}
        assert [m["text"] for m in snapshot["messages"]] == ["hello there"]
        assert snapshot["active_run"]["state"] == "provisioning"
        assert await communicator.receive_nothing(timeout=0.1)


async def test_a_non_canonical_session_id_still_gets_the_sessions_events(session, user, token):
    async with open_socket(str(session.id).upper(), token) as (communicator, snapshot):
        assert snapshot["id"] == str(session.id)
        run = await start(session, user, "hi")
        frames = await receive_until(communicator, of_type("run.state", state="provisioning"))
        assert frames[-1]["run_id"] == str(run.id)


async def test_events_of_other_sessions_are_not_delivered_and_disconnect_leaves_the_group(session, user, token):
    other = await db(session_create, owner=user, title="other")
    async with open_socket(session.id, token) as (mine, _), open_socket(other.id, token) as (theirs, _):
        await start(other, user, "only for the other socket")
        frames = await receive_until(theirs, of_type("run.state"))
        assert [f["type"] for f in frames] == ["session.updated", "message.completed", "run.state"]
        assert await mine.receive_nothing(timeout=0.2)
    layer = get_channel_layer()
    assert not layer.groups.get(events.session_group(session.id))
    assert not layer.groups.get(events.session_group(other.id))


async def test_an_event_committed_while_the_snapshot_is_read_follows_the_snapshot(session, user, token, monkeypatch):
    """The consumer joins the group before it reads the snapshot, so nothing falls in between."""
    real_snapshot = selectors.session_snapshot

    def snapshot_then_a_run_starts(session_obj):
        snapshot = real_snapshot(session_obj)
        run_start(session_id=session_obj.id, user=user, text="started during the snapshot")  # publishes on commit
        return snapshot

    monkeypatch.setattr(selectors, "session_snapshot", snapshot_then_a_run_starts)
    async with open_socket(session.id, token) as (communicator, snapshot):
        assert snapshot["messages"] == [] and snapshot["active_run"] is None
        frames = await receive_until(communicator, of_type("run.state"), timeout=5)
        assert [(f["type"], f.get("text")) for f in frames] == [
            ("session.updated", None), ("message.completed", "started during the snapshot"), ("run.state", None)
        ]
        assert frames[0]["title"] == "test session"  # a titled session keeps its title
        state = reducer.apply_events(snapshot, frames)
        monkeypatch.setattr(selectors, "session_snapshot", real_snapshot)
        assert displayed(state) == displayed(await snapshot_of(session.id))


async def test_a_snapshot_that_cannot_be_read_closes_4503_and_leaves_the_group(session, token, monkeypatch):
    def broken(session_obj):
        raise RuntimeError("database is gone")

    monkeypatch.setattr(selectors, "session_snapshot", broken)
    await assert_closed_with(WebsocketCommunicator(application, api_path(session.id), headers=bearer(token)), 4503)
    assert not get_channel_layer().groups.get(events.session_group(session.id))


# --- authentication and not found: accept, then close with a code -----------------------------------------


async def assert_closed_with(communicator, code: int) -> None:
    try:
        connected, _ = await communicator.connect(timeout=5)
        assert connected  # accepted first, so the client gets the code rather than an HTTP 403
        # Nothing (no snapshot) comes before the close.
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": code}
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("headers", [
    [],
    [(b"authorization", b"Bearer not-a-real-token")],
    [(b"authorization", b"Bearer ")],
    [(b"authorization", b"Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ==")],
])
async def test_unauthenticated_is_closed_4401(session, headers):
    await assert_closed_with(WebsocketCommunicator(application, api_path(session.id), headers=headers), 4401)


async def test_a_token_of_an_inactive_user_is_closed_4401(session, user, token):
    user.is_active = False
    await db(user.save)
    await assert_closed_with(WebsocketCommunicator(application, api_path(session.id), headers=bearer(token)), 4401)


@pytest.mark.parametrize("session_id", ["4b0f6a0e-7f57-4c55-9d0a-6f1b8f0f2d11", "not-a-uuid", "1"])
async def test_unknown_or_malformed_session_is_closed_4404(token, session_id):
    await assert_closed_with(WebsocketCommunicator(application, api_path(session_id), headers=bearer(token)), 4404)


async def test_another_users_session_is_closed_4404(session, other_user):
    theirs = await db(api_token_create, user=other_user)
    await assert_closed_with(WebsocketCommunicator(application, api_path(session.id), headers=bearer(theirs)), 4404)


@pytest.mark.parametrize("path", ["/ws/api/nope/", "/ws/api/sessions/", "/nothing-here"])
async def test_an_unknown_path_is_closed_4404(token, path):
    await assert_closed_with(WebsocketCommunicator(application, path, headers=bearer(token)), 4404)


# --- client_commands --------------------------------------------------------------------------------------------


async def test_run_start_answers_like_http_then_the_run_streams_to_run_finished(worker, session, user, token):
    text = "one two three four five six seven eight"
    async with open_socket(session.id, token) as (communicator, snapshot):
        assert snapshot["messages"] == [] and snapshot["active_run"] is None
        answer, before = await request(
            communicator, {"type": "run.start", "request_id": "r-1", "text": script({"text": text, "delay_ms": 20})}
        )
        run = await db(Run.objects.get, session=session)
        # The result precedes the events the command caused.
        assert before == []
        assert answer == {"type": "run.start.result", "request_id": "r-1", "http_status": 201, "run_id": str(run.id),
                          "state": "provisioning"}
        frames = await receive_until(communicator, of_type("run.finished"))

    run = await db(Run.objects.get, pk=run.id)
    kinds = [f["type"] for f in frames]
    # The session's new title and time, the user's message, then the run's first state.
    assert kinds[:3] == ["session.updated", "message.completed", "run.state"]
    assert frames[2] == {"type": "run.state", "run_id": str(run.id), "state": "provisioning", "prev_state": "",
                         "turn_count": 0, "stop_requested": False, "started_by": "alice"}
    states = [f["state"] for f in frames if f["type"] == "run.state"]
    assert states[0] == "provisioning" and "assistant_streaming" in states and states[-1] == "completed"
    assistant = await db(Message.objects.get, run=run, role="assistant")
    deltas = [f for f in frames if f["type"] == "message.delta"]
    assert len(deltas) >= 2 and {d["message_id"] for d in deltas} == {assistant.id}
    assert rebuild(deltas) == text == assistant.text
    completed = [f for f in frames if f["type"] == "message.completed" and f["message_id"] == assistant.id]
    assert completed == [{"type": "message.completed", "message_id": assistant.id, "run_id": str(run.id),
                          "role": "assistant", "status": "complete", "text": text, "author": None}]
    assert kinds.index("message.completed", 2) > max(i for i, k in enumerate(kinds) if k == "message.delta")
    assert frames[-1] == {"type": "run.finished", "run_id": str(run.id), "outcome": "completed",
                          "receipt": run.receipt}
    assert run.receipt["outcome"] == "completed"


async def test_run_stop_answers_the_stop_contract_and_the_run_finishes_stopped(worker, session, user, token):
    async with open_socket(session.id, token) as (communicator, _):
        started, _ = await request(communicator, {"type": "run.start", "text": script(LONG_STREAM)})
        await receive_until(communicator, of_type("message.delta"))
        answer, _ = await request(communicator, {"type": "run.stop", "request_id": 99})
        assert answer == {"type": "run.stop.result", "request_id": 99, "http_status": 200, "accepted": True,
                          "reason": None, "prior_state": "assistant_streaming", "run_id": started["run_id"]}
        # The stream would run for ~25 s: finishing within 5 s proves the stop preempted it.
        frames = await receive_until(communicator, of_type("run.finished"), timeout=5)
        finished = frames[-1]
        assert finished["outcome"] == "stopped" and finished["receipt"]["stop"]["requested_by"] == "alice"
        stopped = [f for f in frames if f["type"] == "message.completed" and f["role"] == "assistant"]
        assert [f["status"] for f in stopped] == ["stopped"]
        assert 0 < len(stopped[0]["text"].split()) < 5000
        assert any(f["type"] == "run.state" and f["stop_requested"] for f in frames)

        again, _ = await request(communicator, {"type": "run.stop", "run_id": started["run_id"]})
        assert again == {"type": "run.stop.result", "request_id": None, "http_status": 200, "accepted": False,
                         "reason": "already_stopped", "prior_state": "stopped", "run_id": started["run_id"]}


async def test_run_stop_without_a_run_is_no_record(session, token):
    async with open_socket(session.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "run.stop", "request_id": "s"})
        assert answer == {"type": "run.stop.result", "request_id": "s", "http_status": 200, "accepted": False,
                          "reason": "no_record", "prior_state": None, "run_id": None}


async def test_a_shell_call_asks_for_approval_and_approval_decide_resolves_it(worker, session, user, token):
    async with open_socket(session.id, token) as (communicator, _):
        started, _ = await request(communicator, {"type": "run.start", "text": SHELL_THEN_TEXT})
        frames = await receive_until(communicator, of_type("approval.requested"))
        requested = frames[-1]
        approval = await db(Approval.objects.get, run_id=started["run_id"])
        assert requested == {"type": "approval.requested", "approval_id": str(approval.id),
                             "run_id": started["run_id"], "call_id": "call_t1_0", "name": "shell",
                             "arguments": {"command": "echo hi"}, "expires_at": approval.expires_at.isoformat()}

        answer, _ = await request(communicator, {"type": "approval.decide", "request_id": 7,
                                                 "approval_id": requested["approval_id"], "decision": "approve"})
        assert answer == {"type": "approval.decide.result", "request_id": 7, "http_status": 200, "accepted": True,
                          "reason": None}
        frames = await receive_until(communicator, of_type("run.finished"))
        kinds = [f["type"] for f in frames]
        assert frames[0] == {"type": "approval.resolved", "approval_id": str(approval.id), "status": "approved",
                             "reason": "decided"}
        assert "function.started" in kinds and "function.finished" in kinds
        assert frames[-1]["outcome"] == "completed"
        tool = [f for f in frames if f["type"] == "message.completed" and f["role"] == "tool"]
        assert [f["text"] for f in tool] == ["exit code 0\nhi\n"]

        late, _ = await request(communicator, {"type": "approval.decide", "approval_id": str(approval.id),
                                               "decision": "deny"})
        assert late == {"type": "approval.decide.result", "request_id": None, "http_status": 200, "accepted": False,
                        "reason": "approval_closed"}


async def test_steer_answers_the_202_body_and_409_no_active_run_when_idle(session, user, token):
    async with open_socket(session.id, token) as (communicator, _):
        idle, _ = await request(communicator, {"type": "steer", "request_id": "st-0", "text": "too early"})
        assert idle == {"type": "error", "code": "no_active_run", "detail": "no run is in progress in this session",
                        "http_status": 409, "request_id": "st-0", "command": "steer"}

        run = await start(session, user, "a live run")  # no worker: it stays in provisioning
        await receive_until(communicator, of_type("run.state"))
        answer, _ = await request(communicator, {"type": "steer", "request_id": "st-1", "text": "use the long format"})
        steering = await db(SteeringMessage.objects.get, run=run)
        body = await db(selectors.steering_data, steering)
        # Exactly the HTTP body (its "status" is the steering message's), the HTTP status beside it.
        assert answer == {"type": "steer.result", "request_id": "st-1", "http_status": 202, **body}
        assert answer["status"] == "queued" and answer["id"] == str(steering.id)
        updated = await communicator.receive_json_from(timeout=5)
        assert updated == {"type": "steering.updated", "steering_id": str(steering.id), "run_id": str(run.id),
                           "status": "queued", "text": "use the long format", "reason": "",
                               "created_by": "alice"}


async def test_a_second_run_start_is_a_409_run_in_progress_error_frame(session, token):
    async with open_socket(session.id, token) as (communicator, _):
        first, _ = await request(communicator, {"type": "run.start", "text": "first"})
        assert first["http_status"] == 201
        second, _ = await request(communicator, {"type": "run.start", "request_id": "again", "text": "second"})
        assert second == {"type": "error", "code": "run_in_progress",
                          "detail": "a run is already in progress in this session", "http_status": 409,
                          "request_id": "again", "command": "run.start"}
        assert await db(lambda: list(Message.objects.filter(session=session).values_list("text", flat=True))) == [
            "first"
        ]
        await assert_still_open(communicator)


@pytest.mark.parametrize("request_id", ["abc", 42, 0, -1, ""])
async def test_ping_echoes_the_request_id(session, token, request_id):
    async with open_socket(session.id, token) as (communicator, _):
        await assert_still_open(communicator, request_id)


async def test_a_frame_without_request_id_is_answered_with_null(session, token):
    async with open_socket(session.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "ping"})
        assert answer == {"type": "ping.result", "request_id": None}
        answer, _ = await request(communicator, {"type": "ping", "request_id": None})
        assert answer == {"type": "ping.result", "request_id": None}
        answer, _ = await request(communicator, {"type": "run.start", "text": "hi"})
        assert answer["type"] == "run.start.result" and answer["request_id"] is None


async def test_another_users_approval_is_not_found_and_unchanged(session, other_user, token):
    theirs = await db(session_create, owner=other_user, title="theirs")
    approval = await db(park_on_approval, theirs)
    async with open_socket(session.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "approval.decide", "request_id": "a",
                                                 "approval_id": str(approval.id), "decision": "approve"})
        assert answer == {"type": "error", "code": "not_found", "detail": "no such approval", "http_status": 404,
                          "request_id": "a", "command": "approval.decide"}
        await assert_still_open(communicator)
    approval = await db(Approval.objects.select_related("function_call").get, pk=approval.id)
    assert approval.status == ApprovalStatus.PENDING and approval.decided_by_id is None
    assert approval.function_call.status == CallStatus.AWAITING_APPROVAL


async def test_an_approval_of_another_of_my_sessions_is_not_decided_on_this_socket(session, user, token):
    mine_elsewhere = await db(session_create, owner=user, title="another of mine")
    approval = await db(park_on_approval, mine_elsewhere)
    async with open_socket(session.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "approval.decide", "request_id": "x",
                                                 "approval_id": str(approval.id), "decision": "approve"})
        assert answer == {"type": "error", "code": "not_found", "detail": "no such approval", "http_status": 404,
                          "request_id": "x", "command": "approval.decide"}
        await assert_still_open(communicator)
    approval = await db(Approval.objects.get, pk=approval.id)
    assert approval.status == ApprovalStatus.PENDING and approval.decided_by_id is None
    # On its own session's socket the same decision goes through.
    async with open_socket(mine_elsewhere.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "approval.decide", "approval_id": str(approval.id),
                                                 "decision": "approve"})
        assert answer["type"] == "approval.decide.result" and answer["accepted"] is True


async def test_a_token_revoked_while_the_socket_is_open_ends_it_at_the_next_frame(session, user, token):
    async with open_socket(session.id, token) as (communicator, _):
        await assert_still_open(communicator)  # the token works …
        await db(ApiToken.objects.filter(user=user).delete)  # … until it is revoked
        await communicator.send_json_to({"type": "run.start", "request_id": 1, "text": "hi"})
        assert await communicator.receive_json_from(timeout=5) == {
            "type": "error", "code": "unauthenticated", "detail": "the API token is no longer valid",
            "http_status": 401, "request_id": 1, "command": "run.start"}
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert not await db(Run.objects.filter(session=session).exists)  # the command did not run


# --- bad frames: an error frame, and the socket stays open ------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000
BAD_FRAMES = [
    # (frame as sent: text, or bytes for a binary frame), code, status, request_id, command
    pytest.param(b'{"type": "ping"}', "invalid_frame", 400, None, None, id="binary"),
    pytest.param("not json", "invalid_json", 400, None, None, id="not-json"),
    pytest.param('{"type": "ping"', "invalid_json", 400, None, None, id="truncated"),
    pytest.param("", "invalid_json", 400, None, None, id="empty"),
    pytest.param("[1, 2]", "invalid_json", 400, None, None, id="array"),
    pytest.param('"ping"', "invalid_json", 400, None, None, id="string"),
    pytest.param("null", "invalid_json", 400, None, None, id="null"),
    pytest.param(DEEP, "invalid_json", 400, None, None, id="deeply-nested"),
    pytest.param('{"type": "run.start", "text": "hi \\ud800"}', "invalid_json", 400, None, None,
                 id="escaped-lone-surrogate"),
    pytest.param('{"type": "run.start", "text": "hi \ud800"}', "invalid_json", 400, None, None,
                 id="raw-lone-surrogate"),
    pytest.param('{"request_id": 1}', "unknown_type", 400, 1, None, id="missing-type"),
    pytest.param('{"type": "run.launch", "request_id": "x"}', "unknown_type", 400, "x", None, id="unknown-type"),
    pytest.param('{"type": ["ping"]}', "unknown_type", 400, None, None, id="type-not-a-string"),
    pytest.param('{"type": "ping", "request_id": 1.5}', "invalid_field", 400, None, None, id="request-id-float"),
    pytest.param('{"type": "ping", "request_id": true}', "invalid_field", 400, None, None, id="request-id-bool"),
    pytest.param('{"type": "ping", "request_id": [1]}', "invalid_field", 400, None, None, id="request-id-list"),
    pytest.param('{"type": "run.stop", "request_id": 2.5}', "invalid_field", 400, None, "run.stop",
                 id="request-id-float-on-a-command"),
    pytest.param('{"type": "steer", "request_id": {}}', "invalid_field", 400, None, "steer",
                 id="request-id-object-on-a-command"),
    pytest.param('{"type": "run.start", "request_id": 3}', "missing_field", 400, 3, "run.start", id="start-no-text"),
    pytest.param('{"type": "run.start", "text": 5}', "invalid_field", 400, None, "run.start", id="start-text-int"),
    pytest.param('{"type": "run.start", "text": "  "}', "invalid_text", 400, None, "run.start", id="start-blank"),
    pytest.param(json.dumps({"type": "run.start", "text": "a" * (32 * 1024 + 1)}), "text_too_long", 400, None,
                 "run.start", id="start-text-too-long"),
    pytest.param('{"type": "run.stop", "run_id": 5}', "invalid_field", 400, None, "run.stop", id="stop-run-id-int"),
    pytest.param('{"type": "steer", "text": ["x"]}', "invalid_field", 400, None, "steer", id="steer-text-list"),
    pytest.param('{"type": "approval.decide", "decision": "approve"}', "missing_field", 400, None,
                 "approval.decide", id="decide-no-approval-id"),
    pytest.param('{"type": "approval.decide", "approval_id": 12, "decision": "approve"}', "invalid_field", 400,
                 None, "approval.decide", id="decide-approval-id-int"),
    pytest.param('{"type": "approval.decide", "approval_id": "x", "decision": "maybe"}', "invalid_field", 400,
                 None, "approval.decide", id="decide-bad-decision"),
    pytest.param('{"type": "approval.decide", "approval_id": "x", "decision": "approve"}', "not_found", 404,
                 None, "approval.decide", id="decide-malformed-approval-id"),
    # 33 000 two-byte characters: under 64 Ki characters, over 64 KiB of UTF-8.
    pytest.param(json.dumps({"type": "ping", "pad": "é" * 33_000}, ensure_ascii=False), "frame_too_large", 413,
                 None, None, id="too-large-in-utf8-bytes"),
    pytest.param(json.dumps({"type": "run.start", "request_id": 1, "text": "x" * (64 * 1024)}), "frame_too_large",
                 413, None, None, id="too-large"),
]


@pytest.mark.parametrize("raw, code, status, request_id, command", BAD_FRAMES)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open(session, token, raw, code, status,
                                                                          request_id, command):
    async with open_socket(session.id, token) as (communicator, _):
        if isinstance(raw, bytes):
            await communicator.send_input({"type": "websocket.receive", "bytes": raw})
        else:
            await communicator.send_input({"type": "websocket.receive", "text": raw})
        error = await communicator.receive_json_from(timeout=5)
        assert set(error) == {"type", "code", "detail", "http_status", "request_id", "command"}
        assert (error["type"], error["code"], error["http_status"]) == ("error", code, status)
        assert (error["request_id"], error["command"]) == (request_id, command)
        assert isinstance(error["detail"], str) and error["detail"] and "Traceback" not in error["detail"]
        await assert_still_open(communicator)
    assert not await db(Run.objects.exists)
    assert not await db(SteeringMessage.objects.exists)


async def test_a_frame_of_exactly_64_kib_is_accepted(session, token):
    frame = {"type": "ping", "request_id": "edge", "pad": ""}
    frame["pad"] = "x" * (64 * 1024 - len(json.dumps(frame)))
    raw = json.dumps(frame)
    assert len(raw.encode()) == 64 * 1024
    async with open_socket(session.id, token) as (communicator, _):
        await communicator.send_to(text_data=raw)
        assert await communicator.receive_json_from(timeout=5) == {"type": "ping.result", "request_id": "edge"}


async def test_an_unexpected_exception_is_an_internal_error_frame_and_is_logged(session, token, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(client_commands, "start", explode)
    async with open_socket(session.id, token) as (communicator, _):
        with caplog.at_level(logging.ERROR, logger="harness.ws_api.consumers"):
            answer, _ = await request(communicator, {"type": "run.start", "request_id": "boom", "text": "hi"})
        assert answer == {"type": "error", "code": "internal_error",
                          "detail": "the server could not handle this frame", "http_status": 500, "request_id": "boom",
                          "command": "run.start"}
        await assert_still_open(communicator)
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


# --- a client that folds events into its snapshot converges (the Zulip model) ----------------------------


def displayed(snapshot: dict) -> dict:
    """What a client shows: the transcript, the live run, pending approvals, queued/discarded steering."""
    return {
        "messages": [(m["id"], m["role"], m["status"], m["text"]) for m in snapshot["messages"]],
        "active_run": snapshot["active_run"] and (snapshot["active_run"]["id"], snapshot["active_run"]["state"]),
        "latest_run": snapshot["latest_run"] and (snapshot["latest_run"]["id"], snapshot["latest_run"]["outcome"]),
        "pending_approvals": [a["id"] for a in snapshot["pending_approvals"]],
        "steering": [(s["id"], s["status"], s["text"]) for s in snapshot["steering"]],
    }


async def test_a_client_folding_events_into_its_snapshot_converges(worker, session, user, token):
    async with open_socket(session.id, token) as (communicator, snapshot):
        state = snapshot
        received: list[Frame] = []
        started, _ = await request(communicator, {"type": "run.start", "text": SHELL_THEN_TEXT})

        # The run parks: approval.requested, then run.state awaiting_approval (one transaction).
        frames = await receive_until(communicator, of_type("run.state", state="awaiting_approval"))
        received += frames
        state = reducer.apply_events(state, frames)
        (requested,) = [f for f in frames if f["type"] == "approval.requested"]
        assert [a["id"] for a in state["pending_approvals"]] == [requested["approval_id"]]
        assert state["active_run"]["id"] == started["run_id"]
        # A snapshot taken now already shows everything received so far.
        middle = await snapshot_of(session.id)
        assert displayed(state) == displayed(middle)

        answer, frames = await request(communicator, {"type": "approval.decide", "decision": "approve",
                                                      "approval_id": requested["approval_id"]})
        assert answer["accepted"] is True
        frames += await receive_until(communicator, of_type("run.finished"))
        received += frames
        state = reducer.apply_events(state, frames)

    final = await snapshot_of(session.id)
    assert any(f["type"] == "message.delta" for f in received)
    assert displayed(state) == displayed(final)
    assert state["active_run"] is None and state["pending_approvals"] == []
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert state["messages"][-1]["text"] == "the shell said hi and that is all"
    # Events that repeat what a snapshot already shows change nothing: replaying every event onto the middle
    # snapshot (half of them repeats) or onto the final one (all repeats) lands on the same state.
    assert displayed(reducer.apply_events(middle, received)) == displayed(final)
    assert displayed(reducer.apply_events(final, received)) == displayed(final)


async def test_joining_mid_stream_never_corrupts_the_text(worker, session, user, token):
    """A socket opened while an answer streams gets a snapshot with the checkpointed text, then deltas that
    are contiguous with what it holds: the server fills the hole left by deltas published before it joined
    from the next checkpoint. The folded text is always a prefix of the answer, and it keeps growing."""
    answer = " ".join(FILLER[i % len(FILLER)] for i in range(LONG_STREAM["words"]))
    run = await start(session, user, script(LONG_STREAM))
    await wait_until(lambda: Message.objects.filter(run=run, role="assistant").exclude(text="").exists(),
                     what="a checkpoint of streamed text")
    async with open_socket(session.id, token) as (communicator, snapshot):
        (streaming,) = [m for m in snapshot["messages"] if m["role"] == "assistant"]
        assert streaming["status"] == "streaming" and answer.startswith(streaming["text"])
        state = snapshot
        for _ in range(5):
            frames = await receive_until(communicator, of_type("message.delta"))
            for delta in (f for f in frames if f["type"] == "message.delta"):
                assert delta["offset"] <= len(state["messages"][-1]["text"])  # no hole, ever
                state = reducer.apply_event(state, delta)
            text = state["messages"][-1]["text"]
            assert answer.startswith(text) and len(text) > len(streaming["text"])
        await communicator.send_json_to({"type": "run.stop"})
        frames = await receive_until(communicator, of_type("run.finished"), timeout=5)
        state = reducer.apply_events(state, frames)
    final = await snapshot_of(session.id)
    assert displayed(state) == displayed(final)
    assert state["messages"][-1]["status"] == "stopped" and answer.startswith(state["messages"][-1]["text"])


# --- edit and regenerate over the socket ------------------------------------------------------------------


async def test_an_edit_over_the_socket_drops_the_replaced_turn_for_a_folding_client(worker, session, user, token):
    first = await start(session, user, script({"text": "first answer"}))
    await wait_terminal(first.id)
    second = await start(session, user, script({"text": "second answer"}))
    await wait_terminal(second.id)
    replaced = await db(lambda: list(Message.objects.filter(run=second).values_list("id", flat=True)))
    async with open_socket(session.id, token) as (communicator, snapshot):
        assert "second answer" in [m["text"] for m in snapshot["messages"]]
        answer, frames = await request(communicator, {"type": "run.start", "request_id": "edit", "text": script(
            {"echo": True}), "replace_from_message": replaced[0]})
        assert (answer["type"], answer["http_status"], answer["request_id"]) == ("run.start.result", 201, "edit")
        frames += await receive_until(communicator, of_type("run.finished"), timeout=15)
        assert [f for f in frames if f["type"] == "messages.superseded"] == [
            {"type": "messages.superseded", "message_ids": replaced, "run_id": answer["run_id"]}
        ]
        assert [f["type"] for f in frames[:2]] == ["messages.superseded", "session.updated"]  # before the new run
        state = reducer.apply_events(snapshot, frames)
    final = await snapshot_of(session.id)
    assert displayed(state) == displayed(final)
    assert not {m["id"] for m in final["messages"]} & set(replaced)
    echo = final["messages"][-1]["text"]  # what the model was sent for the new run
    assert "first answer" in echo and "second answer" not in echo


async def test_replacing_an_older_message_over_the_socket_is_an_error_frame(session, user, token):
    first = await start(session, user, "first")
    await db(Run.objects.filter(pk=first.id).update, state="completed", outcome="completed")
    second = await start(session, user, "second")
    await db(Run.objects.filter(pk=second.id).update, state="completed", outcome="completed")
    older = await db(lambda: Message.objects.get(run=first).id)
    async with open_socket(session.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "run.start", "request_id": 7, "replace_from_message": older})
        assert (answer["type"], answer["code"], answer["http_status"], answer["command"], answer["request_id"]) == (
            "error", "not_latest_user_message", 409, "run.start", 7)
        answer, _ = await request(communicator, {"type": "run.start", "replace_from_message": "x"})
        assert (answer["code"], answer["http_status"]) == ("invalid_replace_from_message", 400)
        await assert_still_open(communicator)
    assert await db(Run.objects.filter(session=session).count) == 2
