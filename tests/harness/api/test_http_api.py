"""The JSON HTTP API's contract (docs/api.md), through Django's test client.

No worker runs here, so a started run stays in `provisioning`: that is enough for the API contract, where a
run is "in progress" while it is not terminal. Runs in other states (terminal, awaiting approval) are made
directly in the database (tests/factories.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from orchestrator.engine.states.tearing_down import build_receipt
from orchestrator.models import (
    ApiToken,
    ApprovalStatus,
    CallStatus,
    FunctionCall,
    Message,
    MessageRole,
    Run,
    RunState,
    Session,
    SteeringMessage,
)
from orchestrator.services.runs import run_start
from orchestrator.services.sessions import session_create
from orchestrator.services.tokens import api_token_create
from tests.factories import make_run, park_on_approval

pytestmark = pytest.mark.django_db

NO_RECORD = {"accepted": False, "reason": "no_record", "prior_state": None, "run_id": None}
_NO_BODY = object()


class Api:
    """Requests as one bearer-token client: JSON bodies, `Authorization: Bearer <token>`."""

    def __init__(self, client: Client, token: str | None) -> None:
        self.client, self.token = client, token

    def request(self, method: str, path: str, body=_NO_BODY, *, raw: str | bytes | None = None, **extra):
        if raw is None:
            raw = "" if body is _NO_BODY else json.dumps(body)
        if self.token is not None:
            extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {self.token}")
        return self.client.generic(method, path, raw, content_type="application/json", **extra)

    def get(self, path: str, **extra):
        return self.request("GET", path, **extra)

    def post(self, path: str, body=_NO_BODY, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body=_NO_BODY, **kwargs):
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(client, token) -> Api:
    return Api(client, token)


@pytest.fixture
def other_api(other_user) -> Api:
    return Api(Client(), api_token_create(user=other_user))


@pytest.fixture
def anonymous(client) -> Api:
    return Api(client, None)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert body["detail"]
    return body


# --- sessions ---------------------------------------------------------------------------------------------


def test_create_session_returns_201_with_id_and_title(api, user):
    response = api.post("/api/sessions", {"title": "  Fix   the build  "})
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Fix the build"
    session = Session.objects.get(pk=uuid.UUID(body["id"]))
    assert session.owner == user and session.title == "Fix the build"
    assert body["messages"] == [] and body["active_run"] is None and body["latest_run"] is None


def test_create_session_without_a_body_gets_the_default_title(api):
    response = api.post("/api/sessions/")
    assert response.status_code == 201
    assert response.json()["title"] == "New session"


def test_create_session_rejects_a_bad_title(api):
    assert_error(api.post("/api/sessions", {"title": 5}), 400, "invalid_field")
    assert_error(api.post("/api/sessions", {"title": "x" * 201}), 400, "invalid_title")
    assert not Session.objects.exists()


def test_list_sessions_shows_only_the_callers(api, user, other_user):
    mine = [session_create(owner=user, title=f"mine {i}") for i in range(2)]
    session_create(owner=other_user, title="theirs")
    response = api.get("/api/sessions")
    assert response.status_code == 200
    listed = response.json()["sessions"]
    assert {s["id"] for s in listed} == {str(s.id) for s in mine}
    assert set(listed[0]) == {"id", "title", "model", "created_at", "updated_at", "role", "owner", "archived",
                              "archived_at", "active_run"}


def test_session_snapshot_shape(api, session):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"}).json()["run_id"]
    steering_id = api.post(f"/api/sessions/{session.id}/steer", {"text": "be brief"}).json()["id"]

    response = api.get(f"/api/sessions/{session.id}")
    assert response.status_code == 200
    snapshot = response.json()
    assert set(snapshot) == {
        "id", "title", "model", "created_at", "updated_at", "messages", "active_run", "latest_run", "pending_approvals",
        "steering",
    }
    assert snapshot["id"] == str(session.id)
    [message] = snapshot["messages"]
    assert message["role"] == "user" and message["text"] == "hello" and message["status"] == "complete"
    assert message["run_id"] == run_id and isinstance(message["id"], int)
    assert message["call_id"] is None and message["tool_name"] is None and message["usage"] is None
    active = snapshot["active_run"]
    assert active["id"] == run_id
    assert active["state"] == "provisioning" and active["turn_count"] == 0 and active["stop_requested"] is False
    assert active["outcome"] is None and active["max_turns"] == settings.HARNESS_MAX_TURNS
    assert snapshot["latest_run"] == active
    assert snapshot["pending_approvals"] == []
    assert snapshot["steering"] == [
        {"id": steering_id, "run_id": run_id, "text": "be brief", "status": "queued", "reason": None,
         "created_by": "alice", "created_at": snapshot["steering"][0]["created_at"]}
    ]


def test_session_snapshot_lists_pending_approvals(api, session):
    approval = park_on_approval(session)
    snapshot = api.get(f"/api/sessions/{session.id}").json()
    assert snapshot["active_run"]["state"] == "awaiting_approval"
    [pending] = snapshot["pending_approvals"]
    assert pending["id"] == str(approval.id) and pending["run_id"] == str(approval.run_id)
    assert pending["call_id"] == "call_t1_0" and pending["name"] == "shell"
    assert pending["arguments"] == {"command": "ls"}
    assert pending["status"] == "pending" and pending["reason"] is None
    assert pending["expires_at"] == approval.expires_at.isoformat()


def test_snapshot_of_an_idle_session_has_latest_but_no_active_run(api, session):
    run = make_run(session, state=RunState.STOPPED)
    snapshot = api.get(f"/api/sessions/{session.id}").json()
    assert snapshot["active_run"] is None
    assert snapshot["latest_run"]["id"] == str(run.id) and snapshot["latest_run"]["outcome"] == "stopped"


def test_rename_session(api, session):
    response = api.patch(f"/api/sessions/{session.id}/", {"title": "Renamed"})
    assert response.status_code == 200
    assert response.json()["title"] == "Renamed"
    session.refresh_from_db()
    assert session.title == "Renamed"


@pytest.mark.parametrize("body, code", [
    ({"title": "   "}, "invalid_title"),
    ({"title": 3}, "invalid_field"),
    ({}, "missing_field"),
])
def test_rename_session_rejects_bad_titles(api, session, body, code):
    assert_error(api.patch(f"/api/sessions/{session.id}", body), 400, code)
    session.refresh_from_db()
    assert session.title == "test session"


LOCAL_MODEL = "openai:llama3@http://127.0.0.1:11434/v1"


def test_models_lists_the_configured_choices(api, settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.HARNESS_MODELS = [LOCAL_MODEL, "anthropic:claude-sonnet-4-6"]
    response = api.get("/api/models")
    assert response.status_code == 200
    models = response.json()["models"]
    assert [m["id"] for m in models] == ["scripted", LOCAL_MODEL, "anthropic:claude-sonnet-4-6"]
    assert [m["default"] for m in models] == [True, False, False]
    assert [m["available"] for m in models] == [True, True, False]
    assert "ANTHROPIC_API_KEY" in models[2]["problem"]


def test_a_session_chooses_its_model_and_runs_use_it(api, settings):
    settings.HARNESS_MODELS = [LOCAL_MODEL]
    created = api.post("/api/sessions", {"title": "local", "model": LOCAL_MODEL})
    assert created.status_code == 201 and created.json()["model"] == LOCAL_MODEL
    session_id = created.json()["id"]
    back = api.patch(f"/api/sessions/{session_id}", {"model": ""})
    assert back.status_code == 200 and back.json()["model"] == "scripted"  # "" means the default
    assert api.patch(f"/api/sessions/{session_id}", {"model": LOCAL_MODEL}).json()["model"] == LOCAL_MODEL
    started = api.post(f"/api/sessions/{session_id}/runs", {"text": "hi"})
    assert started.status_code == 201
    assert api.get(f"/api/runs/{started.json()['run_id']}").json()["model"] == LOCAL_MODEL


@pytest.mark.parametrize("body, status, code", [
    ({"model": "openai:not-offered@http://127.0.0.1:9/v1"}, 400, "unknown_model"),
    ({"model": "gpt"}, 400, "unknown_model"),
    ({"model": 7}, 400, "invalid_field"),
])
def test_a_model_not_offered_is_refused(api, session, body, status, code):
    assert_error(api.patch(f"/api/sessions/{session.id}", body), status, code)
    assert_error(api.post("/api/sessions", body), status, code)
    session.refresh_from_db()
    assert session.model == ""


def test_a_run_on_a_model_the_deployment_dropped_is_refused(api, session, settings):
    settings.HARNESS_MODELS = [LOCAL_MODEL]
    assert api.patch(f"/api/sessions/{session.id}", {"model": LOCAL_MODEL}).status_code == 200
    settings.HARNESS_MODELS = []
    body = assert_error(api.post(f"/api/sessions/{session.id}/runs", {"text": "hi"}), 409, "model_unavailable")
    assert LOCAL_MODEL in body["detail"]


def test_delete_session(api, session):
    response = api.delete(f"/api/sessions/{session.id}")
    assert response.status_code == 200
    assert response.json() == {"deleted": True}
    assert not Session.objects.filter(pk=session.pk).exists()
    assert_error(api.get(f"/api/sessions/{session.id}"), 404, "not_found")


def test_delete_session_is_refused_while_a_run_is_live(api, session):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"}).json()["run_id"]
    assert_error(api.delete(f"/api/sessions/{session.id}"), 409, "run_in_progress")
    assert Session.objects.filter(pk=session.pk).exists()

    Run.objects.filter(pk=run_id).update(state=RunState.STOPPED, outcome="stopped")
    assert api.delete(f"/api/sessions/{session.id}").status_code == 200
    assert not Session.objects.filter(pk=session.pk).exists()


# --- runs -------------------------------------------------------------------------------------------------


def test_start_run(api, session):
    response = api.post(f"/api/sessions/{session.id}/runs", {"text": "what is 12 * 7?"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"run_id", "state"}
    assert body["state"] == "provisioning"
    run = Run.objects.get(pk=body["run_id"])
    assert run.session_id == session.id and run.state == RunState.PROVISIONING

    snapshot = api.get(f"/api/sessions/{session.id}").json()
    assert [(m["role"], m["text"], m["run_id"]) for m in snapshot["messages"]] == [
        ("user", "what is 12 * 7?", body["run_id"])
    ]


def test_a_second_run_while_one_is_live_is_409(api, session):
    first = api.post(f"/api/sessions/{session.id}/runs", {"text": "one"})
    assert first.status_code == 201
    assert api.post(f"/api/sessions/{session.id}/runs", {"text": "two"}).json() == {
        "error": "run_in_progress", "detail": "a run is already in progress in this session",
    }
    assert_error(api.post(f"/api/sessions/{session.id}/runs", {"text": "two"}), 409, "run_in_progress")
    assert Run.objects.filter(session=session).count() == 1
    assert list(Message.objects.filter(session=session).values_list("text", flat=True)) == ["one"]


def test_a_new_run_can_start_once_the_last_one_is_terminal(api, session):
    make_run(session, state=RunState.COMPLETED)
    response = api.post(f"/api/sessions/{session.id}/runs", {"text": "again"})
    assert response.status_code == 201
    assert Run.objects.filter(session=session).count() == 2


def test_the_first_message_titles_an_untitled_session(api, user):
    session = session_create(owner=user)
    api.post(f"/api/sessions/{session.id}/runs", {"text": "  Refactor   the\nparser  "})
    session.refresh_from_db()
    assert session.title == "Refactor the parser"


# --- edit and regenerate: replace_from_message -------------------------------------------------------------


def answered_turn(api, session, text: str) -> tuple[int, int]:
    """A run started over the API, answered and completed as the engine would leave it: (question, answer) ids."""
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": text}).json()["run_id"]
    answer = Message.objects.create(session=session, run_id=run_id, role=MessageRole.ASSISTANT, text=f"re: {text}")
    Run.objects.filter(pk=run_id).update(state=RunState.COMPLETED, outcome="completed")
    return Message.objects.get(run_id=run_id, role=MessageRole.USER).id, answer.id


def shown(api, session) -> list[tuple[str, str]]:
    return [(m["role"], m["text"]) for m in api.get(f"/api/sessions/{session.id}").json()["messages"]]


def test_an_edit_replaces_the_latest_turn(api, session):
    answered_turn(api, session, "first")
    question, _ = answered_turn(api, session, "second")
    assert shown(api, session)[-1] == ("assistant", "re: second")
    response = api.post(f"/api/sessions/{session.id}/runs", {"text": "second, edited", "replace_from_message": question})
    assert response.status_code == 201 and set(response.json()) == {"run_id", "state"}
    assert shown(api, session) == [("user", "first"), ("assistant", "re: first"), ("user", "second, edited")]
    assert Message.objects.filter(superseded_by_id=response.json()["run_id"]).count() == 2  # kept, marked


def test_regenerate_leaves_out_the_text_and_reuses_the_questions(api, session):
    question, _ = answered_turn(api, session, "the question")
    response = api.post(f"/api/sessions/{session.id}/runs", {"replace_from_message": question})
    assert response.status_code == 201
    assert shown(api, session) == [("user", "the question")]
    assert Message.objects.get(run_id=response.json()["run_id"]).text == "the question"


@pytest.mark.parametrize("target, status, code", [
    ("answer", 400, "invalid_replace_from_message"),
    ("older_question", 409, "not_latest_user_message"),
    ("string", 400, "invalid_replace_from_message"),
    ("float", 400, "invalid_replace_from_message"),
    ("list", 400, "invalid_replace_from_message"),
    ("negative", 400, "invalid_replace_from_message"),
    ("huge", 400, "invalid_replace_from_message"),
    ("other_users", 400, "invalid_replace_from_message"),
])
def test_a_bad_replace_from_message_is_a_4xx_and_changes_nothing(api, other_api, other_user, session, target, status,
                                                                 code):
    older, _ = answered_turn(api, session, "first")
    question, answer = answered_turn(api, session, "second")
    theirs = session_create(owner=other_user)
    their_question, _ = answered_turn(other_api, theirs, "theirs")
    value = {"answer": answer, "older_question": older, "string": str(question), "float": float(question),
             "list": [question], "negative": -question, "huge": 10**30, "other_users": their_question}[target]
    response = api.post(f"/api/sessions/{session.id}/runs", {"text": "edited", "replace_from_message": value})
    assert_error(response, status, code)
    assert Run.objects.filter(session=session).count() == 2
    assert not Message.objects.filter(superseded_at__isnull=False).exists()


def test_replacing_while_a_run_is_live_is_409_run_in_progress(api, session):
    question, _ = answered_turn(api, session, "first")
    live = api.post(f"/api/sessions/{session.id}/runs", {"text": "live"}).json()["run_id"]
    live_question = Message.objects.get(run_id=live).id
    for target in (question, live_question):
        assert_error(api.post(f"/api/sessions/{session.id}/runs", {"replace_from_message": target}), 409,
                     "run_in_progress")
    assert not Message.objects.filter(superseded_at__isnull=False).exists()


def test_an_edit_with_empty_text_is_400_and_a_null_replace_is_a_plain_start(api, session):
    question, _ = answered_turn(api, session, "first")
    assert_error(api.post(f"/api/sessions/{session.id}/runs", {"text": " ", "replace_from_message": question}), 400,
                 "invalid_text")
    assert_error(api.post(f"/api/sessions/{session.id}/runs", {"replace_from_message": None}), 400, "missing_field")
    assert not Message.objects.filter(superseded_at__isnull=False).exists()


# --- stop -------------------------------------------------------------------------------------------------


def test_stop_a_live_run_is_accepted(api, session, user):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"}).json()["run_id"]
    response = api.post(f"/api/sessions/{session.id}/stop")
    assert response.status_code == 200
    assert response.json() == {"accepted": True, "reason": None, "prior_state": "provisioning", "run_id": run_id}
    run = Run.objects.get(pk=run_id)
    assert run.stop_requested_at is not None and run.stop_requested_by == user and run.stop_reason == "user"
    assert run.state == RunState.PROVISIONING  # the executor, not the request, moves it to `stopped`


def test_repeated_stop_is_already_stopping(api, session):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"}).json()["run_id"]
    api.post(f"/api/sessions/{session.id}/stop")
    first_requested_at = Run.objects.get(pk=run_id).stop_requested_at

    response = api.post(f"/api/sessions/{session.id}/stop", {})
    assert response.status_code == 200
    assert response.json() == {
        "accepted": True, "reason": "already_stopping", "prior_state": "provisioning", "run_id": run_id,
    }
    assert Run.objects.get(pk=run_id).stop_requested_at == first_requested_at


@pytest.mark.parametrize("target", ["unknown", "malformed", "other_users"])
def test_stop_without_a_record_changes_nothing(api, other_user, target):
    theirs = session_create(owner=other_user, title="theirs")
    their_run = run_start(session_id=theirs.id, user=other_user, text="busy")
    session_id = {"unknown": str(uuid.uuid4()), "malformed": "not-a-uuid", "other_users": str(theirs.id)}[target]

    response = api.post(f"/api/sessions/{session_id}/stop")
    assert response.status_code == 200
    assert response.json() == NO_RECORD
    their_run.refresh_from_db()
    assert their_run.stop_requested_at is None and their_run.stop_requested_by is None


def test_stop_of_a_session_that_never_ran_is_no_record(api, session):
    assert api.post(f"/api/sessions/{session.id}/stop").json() == NO_RECORD


def test_stop_pinned_to_an_older_run_never_stops_the_newer_one(api, session):
    older = make_run(session, state=RunState.COMPLETED, created_at=timezone.now() - timedelta(minutes=5))
    newer_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "newer"}).json()["run_id"]

    response = api.post(f"/api/sessions/{session.id}/stop", {"run_id": str(older.id)})
    assert response.json() == {
        "accepted": False, "reason": "already_stopped", "prior_state": "completed", "run_id": str(older.id),
    }
    assert Run.objects.get(pk=newer_id).stop_requested_at is None

    response = api.post(f"/api/sessions/{session.id}/stop", {"run_id": newer_id})
    assert response.json() == {"accepted": True, "reason": None, "prior_state": "provisioning", "run_id": newer_id}
    assert Run.objects.get(pk=newer_id).stop_requested_at is not None


@pytest.mark.parametrize("run_id", ["unknown", "malformed", "other_session"])
def test_stop_pinned_to_a_run_not_in_the_session_is_no_record(api, session, user, run_id):
    live_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "live"}).json()["run_id"]
    elsewhere = make_run(session_create(owner=user, title="another"), state=RunState.PROVISIONING)
    pinned = {"unknown": str(uuid.uuid4()), "malformed": "nope", "other_session": str(elsewhere.id)}[run_id]

    assert api.post(f"/api/sessions/{session.id}/stop", {"run_id": pinned}).json() == NO_RECORD
    assert Run.objects.get(pk=live_id).stop_requested_at is None
    elsewhere.refresh_from_db()
    assert elsewhere.stop_requested_at is None


@pytest.mark.parametrize("state", [RunState.COMPLETED, RunState.STOPPED, RunState.FAILED])
def test_stop_of_a_terminal_latest_run_is_already_stopped(api, session, state):
    run = make_run(session, state=state)
    response = api.post(f"/api/sessions/{session.id}/stop")
    assert response.status_code == 200
    assert response.json() == {"accepted": False, "reason": "already_stopped", "prior_state": state,
                               "run_id": str(run.id)}
    run.refresh_from_db()
    assert run.stop_requested_at is None


def test_stop_sweeps_the_runs_pending_approvals(api, session):
    approval = park_on_approval(session)
    response = api.post(f"/api/sessions/{session.id}/stop")
    assert response.json()["accepted"] is True and response.json()["prior_state"] == "awaiting_approval"
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.SWEPT and approval.reason == "run_stopped"
    assert api.get(f"/api/sessions/{session.id}").json()["pending_approvals"] == []
    assert api.post(f"/api/approvals/{approval.id}", {"decision": "approve"}).json() == {
        "accepted": False, "reason": "approval_closed",
    }


def test_stop_rejects_a_non_string_run_id(api, session):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "live"}).json()["run_id"]
    assert_error(api.post(f"/api/sessions/{session.id}/stop", {"run_id": 7}), 400, "invalid_field")
    assert Run.objects.get(pk=run_id).stop_requested_at is None


# --- steer ------------------------------------------------------------------------------------------------


def test_steer_queues_a_message_for_the_live_run(api, session, user):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"}).json()["run_id"]
    response = api.post(f"/api/sessions/{session.id}/steer", {"text": "use metric units"})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "run_id", "text", "status", "reason", "created_by", "created_at"}
    assert body["status"] == "queued" and body["run_id"] == run_id and body["text"] == "use metric units"
    steering = SteeringMessage.objects.get(pk=body["id"])
    assert steering.created_by == user and str(steering.run_id) == run_id


def test_steer_when_idle_is_409_no_active_run(api, session):
    assert_error(api.post(f"/api/sessions/{session.id}/steer", {"text": "hi"}), 409, "no_active_run")
    make_run(session, state=RunState.COMPLETED)
    assert_error(api.post(f"/api/sessions/{session.id}/steer", {"text": "hi"}), 409, "no_active_run")
    assert not SteeringMessage.objects.exists()


def test_steer_while_stopping_is_409_run_stopping(api, session):
    api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"})
    api.post(f"/api/sessions/{session.id}/stop")
    assert_error(api.post(f"/api/sessions/{session.id}/steer", {"text": "hi"}), 409, "run_stopping")
    assert not SteeringMessage.objects.exists()


# --- run detail -------------------------------------------------------------------------------------------


def test_run_detail_of_a_live_stopping_run(api, session):
    run_id = api.post(f"/api/sessions/{session.id}/runs", {"text": "hello"}).json()["run_id"]
    api.post(f"/api/sessions/{session.id}/stop")
    requested_at = Run.objects.get(pk=run_id).stop_requested_at

    response = api.get(f"/api/runs/{run_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == run_id and body["session_id"] == str(session.id)
    assert body["state"] == "provisioning" and body["outcome"] is None and body["turn_count"] == 0
    assert body["stop"] == {
        "requested": True, "requested_at": requested_at.isoformat(), "requested_by": "alice", "reason": "user",
        "acknowledged_at": None, "latency_ms": None,
    }
    assert body["function_calls"] == [] and body["approvals"] == [] and body["receipt"] is None
    assert body["error"] is None
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0, "estimated": False}


def test_run_detail_of_a_finished_run_has_calls_and_receipt(api, session, user):
    now = timezone.now()
    run = make_run(session, state=RunState.STOPPED, turn_count=2, started_at=now - timedelta(seconds=3),
                   stop_requested_at=now - timedelta(seconds=1), stop_requested_by=user, stop_reason="user",
                   stop_acknowledged_at=now - timedelta(milliseconds=900), finished_at=now)
    assistant = Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text="")
    FunctionCall.objects.create(run=run, message=assistant, call_id="call_t1_0", position=0, name="calculator",
                                arguments={"expression": "12*7"}, status=CallStatus.SUCCEEDED, result="84",
                                started_at=now - timedelta(seconds=2), finished_at=now - timedelta(seconds=2))
    FunctionCall.objects.create(run=run, message=assistant, call_id="call_t1_1", position=1, name="shell",
                                arguments={"command": "sleep 9"}, status=CallStatus.CANCELLED,
                                result="cancelled: run stopped by alice", finished_at=now)
    run.receipt = build_receipt(run)
    run.save(update_fields=["receipt"])

    body = api.get(f"/api/runs/{run.id}/").json()
    assert body["state"] == "stopped" and body["outcome"] == "stopped" and body["turn_count"] == 2
    assert body["stop"]["latency_ms"] == 1000.0
    assert body["stop"]["acknowledged_at"] == run.stop_acknowledged_at.isoformat()
    assert [(c["call_id"], c["name"], c["status"], c["result"]) for c in body["function_calls"]] == [
        ("call_t1_0", "calculator", "succeeded", "84"),
        ("call_t1_1", "shell", "cancelled", "cancelled: run stopped by alice"),
    ]
    receipt = body["receipt"]
    assert receipt["outcome"] == "stopped" and receipt["turns"] == 2 and receipt["stop_reason"] == "user"
    assert receipt["completed_calls"] == [{"call_id": "call_t1_0", "name": "calculator", "status": "succeeded"}]
    assert receipt["cancelled_calls"] == [{"call_id": "call_t1_1", "name": "shell", "status": "cancelled"}]
    assert receipt["partly_run_calls"] == []
    assert receipt["stop"]["requested_by"] == "alice" and receipt["stop"]["latency_ms"] == 1000.0


def test_run_detail_hides_the_result_of_an_unfinished_call(api, session):
    approval = park_on_approval(session)
    FunctionCall.objects.filter(pk=approval.function_call_id).update(result="not yet")
    [call] = api.get(f"/api/runs/{approval.run_id}").json()["function_calls"]
    assert call["status"] == "awaiting_approval" and call["result"] is None


def test_another_users_run_is_the_same_404_as_a_random_id(api, other_user):
    theirs = session_create(owner=other_user, title="theirs")
    their_run = run_start(session_id=theirs.id, user=other_user, text="secret")
    missing = api.get(f"/api/runs/{uuid.uuid4()}")
    hidden = api.get(f"/api/runs/{their_run.id}")
    assert_error(hidden, 404, "not_found")
    assert hidden.status_code == missing.status_code and hidden.json() == missing.json()


# --- approvals --------------------------------------------------------------------------------------------


def test_approve(api, session, user):
    approval = park_on_approval(session)
    response = api.post(f"/api/approvals/{approval.id}", {"decision": "approve"})
    assert response.status_code == 200
    assert response.json() == {"accepted": True, "reason": None}
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED and approval.decided_by == user
    assert FunctionCall.objects.get(pk=approval.function_call_id).status == CallStatus.APPROVED
    assert api.get(f"/api/sessions/{session.id}").json()["pending_approvals"] == []


def test_deny_closes_the_call_with_a_tool_message(api, session):
    approval = park_on_approval(session)
    assert api.post(f"/api/approvals/{approval.id}/", {"decision": "deny"}).json() == {
        "accepted": True, "reason": None,
    }
    call = FunctionCall.objects.get(pk=approval.function_call_id)
    assert call.status == CallStatus.DENIED and call.result == "denied by alice"
    tool = Message.objects.get(function_call=call)
    assert tool.role == MessageRole.TOOL and tool.text == "denied by alice"


def test_a_second_decision_is_approval_closed(api, session):
    approval = park_on_approval(session)
    api.post(f"/api/approvals/{approval.id}", {"decision": "approve"})
    response = api.post(f"/api/approvals/{approval.id}", {"decision": "deny"})
    assert response.status_code == 200
    assert response.json() == {"accepted": False, "reason": "approval_closed"}
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert FunctionCall.objects.get(pk=approval.function_call_id).status == CallStatus.APPROVED


def test_an_expired_approval_is_closed_and_its_call_denied(api, session):
    approval = park_on_approval(session, expires_in=timedelta(seconds=-1))
    assert api.post(f"/api/approvals/{approval.id}", {"decision": "approve"}).json() == {
        "accepted": False, "reason": "approval_closed",
    }
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.EXPIRED and approval.reason == "expired"
    call = FunctionCall.objects.get(pk=approval.function_call_id)
    assert call.status == CallStatus.DENIED and call.result == "denied: the approval request expired"


@pytest.mark.parametrize("body, code", [
    ({"decision": "maybe"}, "invalid_field"),
    ({"decision": "APPROVE"}, "invalid_field"),
    ({"decision": True}, "invalid_field"),
    ({"decision": None}, "missing_field"),
    ({}, "missing_field"),
])
def test_a_bad_decision_is_400_and_leaves_the_approval_pending(api, session, body, code):
    approval = park_on_approval(session)
    assert_error(api.post(f"/api/approvals/{approval.id}", body), 400, code)
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_another_users_approval_is_the_same_404_as_a_random_id(api, other_user):
    approval = park_on_approval(session_create(owner=other_user, title="theirs"))
    missing = api.post(f"/api/approvals/{uuid.uuid4()}", {"decision": "approve"})
    hidden = api.post(f"/api/approvals/{approval.id}", {"decision": "approve"})
    assert_error(hidden, 404, "not_found")
    assert hidden.json() == missing.json()
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


# --- bad input --------------------------------------------------------------------------------------------

TEXT_ENDPOINTS = ["runs", "steer"]


@pytest.fixture
def live_session(api, session):
    """A session with a live run, so both /runs (409 past validation) and /steer (202) would accept input."""
    api.post(f"/api/sessions/{session.id}/runs", {"text": "live"})
    return session


def text_path(session, endpoint: str) -> str:
    return f"/api/sessions/{session.id}/{endpoint}"


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
@pytest.mark.parametrize("raw", ['{"text": "hi"', "{text: 'hi'}", "not json", b"\xff\xfe{}", "{}}"])
def test_malformed_json_is_400_invalid_json(api, live_session, endpoint, raw):
    assert_error(api.post(text_path(live_session, endpoint), raw=raw), 400, "invalid_json")


@pytest.mark.parametrize("path, method", [
    ("/api/sessions", "POST"),
    ("/api/sessions/{sid}", "PATCH"),
    ("/api/sessions/{sid}/stop", "POST"),
    ("/api/approvals/{aid}", "POST"),
])
def test_malformed_json_is_400_on_every_endpoint_with_a_body(api, session, path, method):
    approval = park_on_approval(session)
    path = path.format(sid=session.id, aid=approval.id)
    assert_error(api.request(method, path, raw="{oops"), 400, "invalid_json")
    assert_error(api.request(method, path, raw="[1, 2]"), 400, "invalid_json")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING and approval.run.stop_requested_at is None


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
@pytest.mark.parametrize("raw", ['["hi"]', '"hi"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_400(api, live_session, endpoint, raw):
    assert_error(api.post(text_path(live_session, endpoint), raw=raw), 400, "invalid_json")


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_an_empty_body_is_400_where_a_body_is_required(api, live_session, endpoint):
    assert_error(api.post(text_path(live_session, endpoint)), 400, "invalid_json")


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
@pytest.mark.parametrize("body", [{}, {"text": None}, {"message": "hi"}])
def test_missing_text_is_400(api, live_session, endpoint, body):
    assert_error(api.post(text_path(live_session, endpoint), body), 400, "missing_field")


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
@pytest.mark.parametrize("text", [42, 1.5, True, ["hi"], {"text": "hi"}])
def test_text_that_is_not_a_string_is_400(api, live_session, endpoint, text):
    assert_error(api.post(text_path(live_session, endpoint), {"text": text}), 400, "invalid_field")


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n"])
def test_empty_or_whitespace_text_is_400(api, live_session, endpoint, text):
    assert_error(api.post(text_path(live_session, endpoint), {"text": text}), 400, "invalid_text")
    assert not SteeringMessage.objects.exists()


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_text_over_the_limit_is_400_text_too_long(api, session, endpoint):
    if endpoint == "steer":
        api.post(f"/api/sessions/{session.id}/runs", {"text": "live"})
    limit = settings.HARNESS_MAX_TEXT_BYTES
    assert limit == 32 * 1024
    # Bytes of UTF-8, not characters: 16 385 two-byte characters are 32 770 bytes.
    for text in ["a" * (limit + 1), "é" * (limit // 2 + 1)]:
        raw = json.dumps({"text": text}, ensure_ascii=False)
        assert len(raw.encode()) < 64 * 1024
        assert_error(api.post(text_path(session, endpoint), raw=raw), 400, "text_too_long")
    assert Message.objects.filter(session=session).count() == (1 if endpoint == "steer" else 0)
    assert not SteeringMessage.objects.exists()


def test_text_at_the_limit_is_accepted(api, session):
    limit = settings.HARNESS_MAX_TEXT_BYTES
    response = api.post(f"/api/sessions/{session.id}/runs", raw=json.dumps({"text": "é" * (limit // 2)},
                                                                          ensure_ascii=False))
    assert response.status_code == 201
    assert len(Message.objects.get(session=session).text.encode()) == limit


@pytest.mark.parametrize("path", ["/api/sessions", "/api/sessions/{sid}/runs", "/api/sessions/{sid}/stop",
                                  "/api/sessions/{sid}/steer"])
def test_a_body_over_64_kib_is_413(api, session, path):
    api.post(f"/api/sessions/{session.id}/runs", {"text": "live"})
    raw = json.dumps({"text": "hi", "padding": "x" * (64 * 1024)})
    assert_error(api.post(path.format(sid=session.id), raw=raw), 413, "body_too_large")
    assert Session.objects.count() == 1 and SteeringMessage.objects.count() == 0
    assert Run.objects.get(session=session).stop_requested_at is None


def test_a_body_over_djangos_upload_limit_is_still_json_413(api, session):
    raw = json.dumps({"text": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = api.post(f"/api/sessions/{session.id}/runs", raw=raw)
    assert_error(response, 413, "body_too_large")


def test_deeply_nested_json_is_400_not_500(session, token):
    client = Client(raise_request_exception=False)
    raw = "[" * 5000 + "]" * 5000  # 10 KB, well under the body limit
    response = Api(client, token).post(f"/api/sessions/{session.id}/runs", raw=raw)
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_text_with_a_lone_surrogate_is_400_not_500(live_session, token, endpoint):
    client = Client(raise_request_exception=False)
    response = Api(client, token).post(text_path(live_session, endpoint), raw='{"text": "hi \\ud800"}')
    assert response.status_code == 400 and response.json()["error"] in {"invalid_json", "invalid_text"}
    assert not SteeringMessage.objects.exists() and Message.objects.filter(session=live_session).count() == 1


def test_title_with_a_lone_surrogate_is_400_not_500(token):
    client = Client(raise_request_exception=False)
    response = Api(client, token).post("/api/sessions", raw='{"title": "hi \\ud800"}')
    assert response.status_code == 400 and response.json()["error"] in {"invalid_json", "invalid_title"}
    assert not Session.objects.exists()


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_text_with_a_nul_character_is_refused(live_session, token, endpoint):
    # PostgreSQL text columns cannot hold NUL; refuse it on every database so the two never differ.
    response = Api(Client(), token).post(text_path(live_session, endpoint), {"text": "hi \x00 there"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_text"
    assert not SteeringMessage.objects.exists() and Message.objects.filter(session=live_session).count() == 1


def _owned_paths(session_id, run_id, approval_id):
    return [
        ("GET", f"/api/sessions/{session_id}", _NO_BODY),
        ("PATCH", f"/api/sessions/{session_id}", {"title": "x"}),
        ("DELETE", f"/api/sessions/{session_id}", _NO_BODY),
        ("POST", f"/api/sessions/{session_id}/runs", {"text": "hi"}),
        ("POST", f"/api/sessions/{session_id}/steer", {"text": "hi"}),
        ("GET", f"/api/runs/{run_id}", _NO_BODY),
        ("POST", f"/api/approvals/{approval_id}", {"decision": "approve"}),
    ]


@pytest.mark.parametrize("kind", ["random-uuid", "not-a-uuid", "number", "uuid-too-long"])
def test_unknown_and_malformed_ids_are_404_not_found(api, kind):
    def ident() -> str:
        return {"random-uuid": str(uuid.uuid4()), "not-a-uuid": "not-a-uuid", "number": "1",
                "uuid-too-long": str(uuid.uuid4()) + "0"}[kind]

    for method, path, body in _owned_paths(ident(), ident(), ident()):
        assert_error(api.request(method, path, body), 404, "not_found")


def test_another_users_objects_are_the_same_404_as_missing_ones(api, other_user):
    theirs = session_create(owner=other_user, title="theirs")
    approval = park_on_approval(theirs)
    their_paths = _owned_paths(theirs.id, approval.run_id, approval.id)
    missing_paths = _owned_paths(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    for (method, path, body), (_, missing_path, _) in zip(their_paths, missing_paths):
        hidden = api.request(method, path, body)
        assert_error(hidden, 404, "not_found")
        assert hidden.json() == api.request(method, missing_path, body).json(), path

    theirs.refresh_from_db()
    approval.refresh_from_db()
    assert theirs.title == "theirs" and approval.status == ApprovalStatus.PENDING
    assert Run.objects.filter(session=theirs).count() == 1 and not SteeringMessage.objects.exists()


@pytest.mark.parametrize("method, path", [
    ("PUT", "/api/sessions"),
    ("DELETE", "/api/sessions"),
    ("POST", "/api/sessions/{sid}"),
    ("GET", "/api/sessions/{sid}/runs"),
    ("GET", "/api/sessions/{sid}/stop"),
    ("DELETE", "/api/sessions/{sid}/steer"),
    ("POST", "/api/runs/{sid}"),
    ("GET", "/api/approvals/{sid}"),
])
def test_a_wrong_method_is_405(api, session, method, path):
    response = api.request(method, path.format(sid=session.id))
    assert_error(response, 405, "method_not_allowed")
    assert not Run.objects.exists() and Session.objects.filter(pk=session.pk).exists()


@pytest.mark.parametrize("path", ["/api/", "/api/nope", "/api/sessions/{sid}/nope", "/api/sessions/{sid}/runs/x",
                                  "/api/runs"])
def test_an_unknown_api_path_is_a_json_404(api, anonymous, session, path):
    path = path.format(sid=session.id)
    assert_error(api.get(path), 404, "not_found")
    assert_error(anonymous.post(path, {}), 404, "not_found")


# --- authentication ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/sessions", _NO_BODY),
    ("POST", "/api/sessions", {}),
    ("GET", "/api/sessions/{sid}", _NO_BODY),
    ("POST", "/api/sessions/{sid}/runs", {"text": "hi"}),
    ("POST", "/api/sessions/{sid}/stop", {}),
    ("POST", "/api/sessions/{sid}/steer", {"text": "hi"}),
    ("GET", "/api/runs/{sid}", _NO_BODY),
    ("POST", "/api/approvals/{sid}", {"decision": "approve"}),
])
@pytest.mark.parametrize("authorization", [
    None, "Bearer hk_not-a-real-token", "Bearer ", "Bearer", "Token {token}", "Basic YWxpY2U6YWxpY2U=", "{token}",
])
def test_requests_without_valid_credentials_are_401(client, session, token, method, path, body, authorization):
    extra = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization.format(token=token)}
    response = Api(client, None).request(method, path.format(sid=session.id), body, **extra)
    assert_error(response, 401, "unauthenticated")
    assert Session.objects.count() == 1 and not Run.objects.exists()


def test_the_bearer_scheme_is_case_insensitive(client, token):
    response = Api(client, None).get("/api/sessions", HTTP_AUTHORIZATION=f"bearer {token}")
    assert response.status_code == 200


def test_a_deactivated_users_token_is_rejected(api, user):
    assert api.get("/api/sessions").status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert_error(api.get("/api/sessions"), 401, "unauthenticated")


def test_only_the_tokens_digest_is_stored(user):
    raw = api_token_create(user=user)
    token = ApiToken.objects.get(user=user)
    assert raw.startswith("hk_") and len(raw) > 40
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert token.prefix == raw[:10]
    stored = [str(value) for value in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert not any(raw in value for value in stored)


def test_a_token_records_when_it_was_last_used(api, user):
    assert ApiToken.objects.get(user=user).last_used_at is None
    api.get("/api/sessions")
    assert ApiToken.objects.get(user=user).last_used_at is not None


def test_create_api_token_command_prints_a_working_token_once(client):
    out = io.StringIO()
    call_command("create_api_token", "robot", stdout=out)
    raw = out.getvalue().strip()
    assert len(raw.splitlines()) == 1 and raw.startswith("hk_")
    assert ApiToken.objects.get(user__username="robot").digest == hashlib.sha256(raw.encode()).hexdigest()
    response = Api(client, raw).post("/api/sessions", {"title": "from a script"})
    assert response.status_code == 201
    assert Session.objects.get(pk=response.json()["id"]).owner.username == "robot"


def test_a_bad_bearer_token_wins_over_a_session_cookie(client, user):
    client.force_login(user)  # (Client.login passes no request, which the login throttle needs)
    assert client.get("/api/sessions").status_code == 200
    response = client.get("/api/sessions", HTTP_AUTHORIZATION="Bearer hk_wrong")
    assert_error(response, 401, "unauthenticated")


# --- session-cookie auth (the portal) ---------------------------------------------------------------------


@pytest.fixture
def portal(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_token(client: Client) -> str:
    assert client.get("/login/").status_code == 200
    return client.cookies["csrftoken"].value


def test_a_logged_in_browser_can_read(portal, user, other_user):
    mine = session_create(owner=user, title="mine")
    session_create(owner=other_user, title="theirs")
    response = portal.get("/api/sessions")
    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [str(mine.id)]
    assert portal.get(f"/api/sessions/{mine.id}").json()["title"] == "mine"


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/sessions", {"title": "x"}),
    ("PATCH", "/api/sessions/{sid}", {"title": "x"}),
    ("DELETE", "/api/sessions/{sid}", _NO_BODY),
    ("POST", "/api/sessions/{sid}/runs", {"text": "hi"}),
    ("POST", "/api/sessions/{sid}/stop", {}),
])
def test_a_browser_write_without_a_csrf_token_is_403(portal, session, method, path, body):
    response = Api(portal, None).request(method, path.format(sid=session.id), body)
    assert_error(response, 403, "csrf_failed")
    session.refresh_from_db()
    assert session.title == "test session"
    assert Session.objects.count() == 1 and not Run.objects.exists()


def test_a_browser_write_with_a_wrong_csrf_token_is_403(portal):
    csrf_token(portal)
    response = Api(portal, None).post("/api/sessions", {"title": "x"}, HTTP_X_CSRFTOKEN="A" * 32)
    assert_error(response, 403, "csrf_failed")
    assert not Session.objects.exists()


def test_a_browser_write_with_the_csrf_token_works(portal, user):
    browser = Api(portal, None)
    token = csrf_token(portal)
    response = browser.post("/api/sessions", {"title": "from the portal"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    session_id = response.json()["id"]
    assert Session.objects.get(pk=session_id).owner == user
    response = browser.post(f"/api/sessions/{session_id}/runs", {"text": "hi"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    stop = browser.post(f"/api/sessions/{session_id}/stop", HTTP_X_CSRFTOKEN=token)
    assert stop.json()["accepted"] is True and stop.json()["run_id"] == response.json()["run_id"]


def test_a_logged_out_browser_is_401(portal, user):
    session = session_create(owner=user, title="mine")
    portal.logout()
    assert_error(portal.get(f"/api/sessions/{session.id}"), 401, "unauthenticated")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/tokens", "/api/approvals/", "/api/sessions/{sid}/runs/extra"])
def test_a_write_to_an_unknown_api_path_is_a_json_404_before_csrf(portal, session, method, path):
    """With the portal's login cookie and no CSRF token: a known path refuses with the JSON CSRF error, an
    unknown one is simply not there (not Django's HTML CSRF page)."""
    assert_error(portal.post("/api/sessions", {}, content_type="application/json"), 403, "csrf_failed")
    response = getattr(portal, method)(path.format(sid=session.id))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_bodies_must_be_utf8(api, session, encoding):
    body = json.dumps({"text": "hi"})
    assert api.post(f"/api/sessions/{session.id}/runs", raw=body.encode("utf-8")).status_code == 201  # UTF-8: fine
    assert_error(api.post(f"/api/sessions/{session.id}/runs", raw=body.encode(encoding)), 400, "invalid_json")


def test_too_many_live_runs_is_a_429(api, user, settings):
    settings.HARNESS_MAX_LIVE_RUNS_PER_USER = 1
    first, second = (session_create(owner=user, title=title) for title in ("one", "two"))
    assert api.post(f"/api/sessions/{first.id}/runs", {"text": "hi"}).status_code == 201
    assert_error(api.post(f"/api/sessions/{second.id}/runs", {"text": "hi"}), 429, "too_many_runs")
