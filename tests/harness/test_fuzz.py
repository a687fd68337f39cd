"""Fuzzing both APIs with hypothesis: any method, path and body to every HTTP endpoint, any frame to the JSON
socket. Whatever arrives: never a 5xx, always a JSON error body (`{"error", "detail"}`) or an error frame,
the socket stays open, and another user's session is unchanged afterwards."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from orchestrator import selectors
from orchestrator.services.sessions import session_create
from orchestrator.services.tokens import api_token_create

pytestmark = pytest.mark.django_db

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = ("text", "title", "model", "run_id", "decision", "approval_id", "request_id", "type")
BODIES = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON_VALUES, max_size=4).map(json.dumps),
    JSON_VALUES.map(json.dumps),
    st.binary(max_size=64).map(lambda raw: raw.decode("latin-1")),
    st.just(""),
)
PATHS = ("/api/models", "/api/sessions", "/api/sessions/{sid}", "/api/sessions/{sid}/runs",
         "/api/sessions/{sid}/stop", "/api/sessions/{sid}/steer", "/api/runs/{rid}", "/api/approvals/{aid}",
         "/api/nowhere", "/api/sessions/{other}", "/api/sessions/{other}/runs", "/api/sessions/{sid}/files",
         "/api/sessions/{sid}/files?name={rid}", "/api/sessions/{sid}/files/{rid}", "/api/sessions/{other}/files")
IDS = st.sampled_from(["not-a-uuid", "00000000-0000-0000-0000-000000000000", "", "%00", "x" * 300])


@pytest.fixture
def world(user, other_user):
    mine = session_create(owner=user, title="mine")
    theirs = session_create(owner=other_user, title="theirs, never to change")
    return {"token": api_token_create(user=user), "mine": mine, "theirs": theirs,
            "theirs_before": selectors.session_snapshot(theirs)}


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"]), path=st.sampled_from(PATHS), body=BODIES,
       some_id=IDS, content_type=st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x",
                                                  "application/x-www-form-urlencoded"]))
def test_no_http_request_gets_a_server_error(world, method, path, body, some_id, content_type):
    url = path.format(sid=world["mine"].id, rid=some_id, aid=some_id, other=world["theirs"].id)
    response = Client(raise_request_exception=False).generic(
        method, url, body.encode("utf-8", "surrogatepass"), content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {world['token']}")
    assert response.status_code < 500, (method, url, body, response.content[:200])
    if not (response.status_code == 200 and response.get("Content-Disposition", "").startswith("attachment")):
        assert response["Content-Type"] == "application/json"  # (a file uploaded earlier is downloaded as itself)
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "detail"}
    assert selectors.session_snapshot(world["theirs"]) == world["theirs_before"]


FRAMES = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4).map(
        lambda frame: json.dumps(frame if "type" in frame else {"type": "run.start", **frame})),
    st.sampled_from(["run.start", "run.stop", "steer", "approval.decide", "session.update", "ping", "nope"]).flatmap(
        lambda kind: st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=3)
        .map(lambda rest: json.dumps({**rest, "type": kind}))),
    BODIES.map(lambda body: body or " "),
)


@pytest.mark.django_db(transaction=True)
@hypothesis_settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(FRAMES, min_size=15, max_size=15))
def test_no_socket_frame_gets_a_server_error_or_closes_it(user, frames):
    """Each example: one socket, 15 frames in a row; every one is answered, none with a 5xx, and the socket
    is still open after them all."""
    from asgiref.sync import async_to_sync
    from channels.layers import channel_layers

    from tests.harness.ws_api.test_consumer import assert_still_open, open_socket

    token = api_token_create(user=user)
    session = session_create(owner=user)
    channel_layers.backends = {}  # the in-memory layer belongs to one event loop; each example has its own

    async def exchange() -> None:
        async with open_socket(session.id, token) as (communicator, _):
            for frame in frames:
                await communicator.send_to(text_data=frame)
                answer = await communicator.receive_json_from(timeout=5)
                while "http_status" not in answer and answer.get("type") != "ping.result":
                    answer = await communicator.receive_json_from(timeout=5)  # an event the command caused
                assert answer.get("http_status", 200) < 500, (frame, answer)
                if answer["type"] == "error":
                    assert {"code", "detail", "http_status", "request_id", "command"} <= set(answer)
            await assert_still_open(communicator)

    async_to_sync(exchange)()
