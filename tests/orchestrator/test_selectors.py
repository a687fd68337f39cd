"""orchestrator/selectors.py, called directly: the owner-scoped look-ups (another user's record is as
absent as a missing one, a malformed id is no error), and the exact dictionaries every client's snapshot
and run detail are built from — which records they include, in which order, and what is hidden or null.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator import selectors
from orchestrator.models import (
    Approval,
    ApprovalStatus,
    CallStatus,
    FunctionCall,
    Message,
    MessageRole,
    Run,
    RunState,
    Session,
    SteeringMessage,
    SteeringStatus,
)
from orchestrator.services.sessions import session_create
from tests.factories import add_calls, add_messages, make_run, park_on_approval

pytestmark = pytest.mark.django_db

BAD_IDS = [None, "", "not-a-uuid", str(uuid.uuid4())]


# --- owner-scoped look-ups ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_session_for_user_finds_only_the_users_own_session(session, user, other_user, bad_id):
    assert selectors.session_for_user(session_id=str(session.id), user=user) == session
    assert selectors.session_for_user(session_id=str(session.id).upper(), user=user) == session
    assert selectors.session_for_user(session_id=session.id, user=other_user) is None
    assert selectors.session_for_user(session_id=bad_id, user=user) is None


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_session_for_approval_is_the_approvals_session_for_its_owner_only(session, user, other_user, bad_id):
    approval = park_on_approval(session)
    assert selectors.session_for_approval(approval_id=str(approval.id), user=user) == session
    assert selectors.session_for_approval(approval_id=approval.id, user=other_user) is None
    assert selectors.session_for_approval(approval_id=bad_id, user=user) is None


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_run_for_user_finds_only_a_run_of_the_users_sessions(session, user, other_user, bad_id):
    run = make_run(session, RunState.STOPPED, stopped_by=user)
    found = selectors.run_for_user(run_id=str(run.id), user=user)
    assert found == run and found.session == session and found.stop_requested_by == user
    assert selectors.run_for_user(run_id=run.id, user=other_user) is None
    assert selectors.run_for_user(run_id=bad_id, user=user) is None


# --- records as clients see them ---------------------------------------------------------------------------


def test_session_summary_names_the_model_the_next_run_uses(session, settings):
    settings.HARNESS_MODEL = "scripted"
    assert selectors.session_summary(session) == {
        "id": str(session.id), "title": "test session", "model": "scripted",
        "created_at": session.created_at.isoformat(), "updated_at": session.updated_at.isoformat(),
    }
    session.model = "openai:gpt-x"
    assert selectors.session_summary(session)["model"] == "openai:gpt-x"


def test_message_data_of_a_plain_message(session):
    message = Message.objects.create(session=session, role=MessageRole.SYSTEM, text="a notice")
    assert selectors.message_data(message) == {
        "id": message.id, "run_id": None, "role": "system", "text": "a notice", "status": "complete", "author": None,
        "call_id": None, "tool_name": None, "usage": None, "created_at": message.created_at.isoformat(),
    }


def test_message_data_names_a_tool_results_call_and_an_answers_usage(session):
    run = make_run(session, RunState.FUNCTION_EXECUTE)
    (call,) = add_calls(run, ("clock", {}), status=CallStatus.SUCCEEDED)
    result = Message.objects.create(session=session, run=run, role=MessageRole.TOOL, text="12:00", function_call=call)
    data = selectors.message_data(result)
    assert (data["run_id"], data["call_id"], data["tool_name"], data["usage"]) == (str(run.id), "c0", "clock", None)
    answer = Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text="noon",
                                    input_tokens=40, output_tokens=2, usage_estimated=True)
    assert selectors.message_data(answer)["usage"] == {"input_tokens": 40, "output_tokens": 2, "estimated": True}


def test_run_summary(session):
    now = timezone.now()
    live = make_run(session, RunState.FUNCTION_EXECUTE, turn_count=2, started_at=now)
    assert selectors.run_summary(live) == {
        "id": str(live.id), "state": "function_execute", "outcome": None, "turn_count": 2, "max_turns": 5,
        "stop_requested": False, "started_by": None, "created_at": live.created_at.isoformat(),
        "started_at": now.isoformat(), "finished_at": None,
    }
    Run.objects.filter(pk=live.pk).update(state=RunState.COMPLETED, outcome="completed", finished_at=now)
    live.refresh_from_db()
    summary = selectors.run_summary(live)
    assert (summary["outcome"], summary["finished_at"]) == ("completed", now.isoformat())


def test_call_data_hides_the_result_until_the_call_has_finished(session):
    run = make_run(session, RunState.FUNCTION_EXECUTE)
    (call,) = add_calls(run, ("shell", {"command": "ls"}), status=CallStatus.RUNNING)
    FunctionCall.objects.filter(pk=call.pk).update(result="partial output")
    call.refresh_from_db()
    assert selectors.call_data(call) == {
        "call_id": "c0", "name": "shell", "arguments": {"command": "ls"}, "status": "running", "result": None,
        "created_at": call.created_at.isoformat(), "started_at": None, "finished_at": None,
    }
    call.status = CallStatus.SUCCEEDED
    assert selectors.call_data(call)["result"] == "partial output"


def test_approval_data(session):
    approval = park_on_approval(session)
    assert selectors.approval_data(approval) == {
        "id": str(approval.id), "run_id": str(approval.run_id), "call_id": "call_t1_0", "name": "shell",
        "arguments": {"command": "ls"}, "status": "pending", "reason": None,
        "decided_by": None, "created_at": approval.created_at.isoformat(), "expires_at": approval.expires_at.isoformat(),
    }
    approval.status, approval.reason = ApprovalStatus.SWEPT, "run_stopped"
    assert (selectors.approval_data(approval)["status"], selectors.approval_data(approval)["reason"]) == (
        "swept", "run_stopped",
    )


def test_steering_data(session):
    run = make_run(session, RunState.FUNCTION_EXECUTE)
    steering = SteeringMessage.objects.create(session=session, run=run, text="be brief")
    assert selectors.steering_data(steering) == {
        "id": str(steering.id), "run_id": str(run.id), "text": "be brief", "status": "queued", "reason": None,
        "created_by": None, "created_at": steering.created_at.isoformat(),
    }


# --- the snapshot and the run detail -----------------------------------------------------------------------


def test_snapshot_of_a_session_that_never_ran(session):
    assert selectors.session_snapshot(session) == {
        **selectors.session_summary(session), "messages": [], "active_run": None, "latest_run": None,
        "pending_approvals": [], "steering": [],
    }


def test_snapshot_of_a_live_run(session):
    earlier = make_run(session, RunState.COMPLETED, created_at=timezone.now() - timedelta(minutes=5))
    SteeringMessage.objects.create(session=session, run=earlier, text="an old run's steering",
                                   status=SteeringStatus.DISCARDED)
    approval = park_on_approval(session)
    run = approval.run
    queued = SteeringMessage.objects.create(session=session, run=run, text="be brief")
    SteeringMessage.objects.create(session=session, run=run, text="applied already", status=SteeringStatus.APPLIED)
    snapshot = selectors.session_snapshot(session)
    assert snapshot["active_run"] == snapshot["latest_run"] == selectors.run_summary(run)
    assert [(m["role"], m["text"]) for m in snapshot["messages"]] == [("user", "list the files"), ("assistant", "")]
    assert snapshot["pending_approvals"] == [selectors.approval_data(approval)]
    assert snapshot["steering"] == [selectors.steering_data(queued)]  # the latest run's, not yet applied


def test_snapshot_of_an_idle_session_has_a_latest_run_but_no_active_one_nor_closed_approvals(session):
    approval = park_on_approval(session)
    Run.objects.filter(pk=approval.run_id).update(state=RunState.STOPPED, outcome="stopped")
    Approval.objects.filter(pk=approval.pk).update(status=ApprovalStatus.SWEPT, reason="run_stopped")
    snapshot = selectors.session_snapshot(session)
    assert snapshot["active_run"] is None
    assert snapshot["latest_run"]["id"] == str(approval.run_id) and snapshot["latest_run"]["state"] == "stopped"
    assert snapshot["pending_approvals"] == []


def test_run_detail_of_a_stopped_run(session, user):
    now = timezone.now()
    run = make_run(
        session, RunState.STOPPED, stop_requested_at=now, stop_requested_by=user, stop_reason="user",
        model="scripted", error="", stop_acknowledged_at=now, finished_at=now + timedelta(milliseconds=250),
        input_tokens=30, output_tokens=7, usage_estimated=True, receipt={"outcome": "stopped"},
    )
    # Made one after the other (c0, c1); with the same creation time, the position decides the order.
    second, first = add_calls(run, ("clock", {}), ("calculator", {"expression": "1+1"}),
                              status=CallStatus.CANCELLED)
    FunctionCall.objects.filter(pk=second.pk).update(position=1)
    FunctionCall.objects.filter(pk=first.pk).update(position=0, created_at=second.created_at)
    detail = selectors.run_detail(Run.objects.select_related("stop_requested_by").get(pk=run.pk))
    run.refresh_from_db()
    assert detail == {
        **selectors.run_summary(run),
        "session_id": str(session.id), "model": "scripted", "error": None,
        "stop": {
            "requested": True, "requested_at": now.isoformat(), "requested_by": "alice",
            "reason": "user", "acknowledged_at": now.isoformat(), "latency_ms": 250.0,
        },
        "usage": {"input_tokens": 30, "output_tokens": 7, "estimated": True},
        "function_calls": [selectors.call_data(FunctionCall.objects.get(pk=pk)) for pk in (first.pk, second.pk)],
        "approvals": [],
        "receipt": {"outcome": "stopped"},
    }


def test_run_detail_of_a_run_waiting_on_a_person(session):
    approval = park_on_approval(session)
    detail = selectors.run_detail(approval.run)
    assert (detail["model"], detail["error"], detail["receipt"]) == (None, None, None)
    assert detail["stop"] == {"requested": False, "requested_at": None, "requested_by": None, "reason": None,
                              "acknowledged_at": None, "latency_ms": None}
    assert [c["status"] for c in detail["function_calls"]] == ["awaiting_approval"]
    assert detail["approvals"] == [selectors.approval_data(approval)]


# --- the portal's reads (harness/ reads nothing but these) -------------------------------------------------


def test_latest_run_is_the_newest_of_the_session(session, user):
    assert selectors.latest_run(session.id) is None
    older = make_run(session, created_at=timezone.now() - timedelta(minutes=2))
    newer = make_run(session, RunState.AWAITING_ASSISTANT, stopped_by=user)
    make_run(owner=user, title="another session")  # newer still, but not this session's
    latest = selectors.latest_run(session.id)
    assert latest == newer and latest != older
    assert latest.stop_requested_by == user  # read with the run (the composer shows who stopped it)


def test_transcript_messages_in_order_with_their_calls(session):
    run = make_run(session)
    first = Message.objects.create(session=session, run=run, role=MessageRole.USER, text="one")
    [call] = add_calls(run, ("clock", {}))
    tool = Message.objects.create(session=session, run=run, role=MessageRole.TOOL, text="12:00", function_call=call)
    messages = selectors.transcript_messages(session)
    assert [m.id for m in messages] == [first.id, call.message_id, tool.id]
    assert messages[2].function_call == call and list(messages[1].function_calls.all()) == [call]


def test_a_transcript_page_is_the_newest_messages_oldest_first_with_their_calls(session):
    run = make_run(session)
    history = add_messages(session, 120)
    [call] = add_calls(run, ("clock", {}))
    tool = Message.objects.create(session=session, run=run, role=MessageRole.TOOL, text="12:00", function_call=call)
    newest, has_older = selectors.transcript_page(session)
    assert [m.id for m in newest] == [m.id for m in history[-48:]] + [call.message_id, tool.id] and has_older
    assert newest[-1].function_call == call and list(newest[-2].function_calls.all()) == [call]

    older, has_older = selectors.transcript_page(session, before=newest[0].id)
    assert [m.id for m in older] == [m.id for m in history[22:72]] and has_older
    oldest, has_older = selectors.transcript_page(session, before=older[0].id)
    assert [m.id for m in oldest] == [m.id for m in history[:22]] and not has_older
    assert selectors.transcript_page(session, before=history[0].id) == ([], False)
    exactly, has_older = selectors.transcript_page(session, before=history[10].id, limit=10)
    assert [m.text for m in exactly] == [f"message {n}" for n in range(1, 11)] and not has_older


def test_a_transcript_page_is_one_query_and_its_calls_another_whatever_the_length(session,
                                                                                   django_assert_num_queries):
    add_messages(session, 3000)
    with django_assert_num_queries(2):
        messages, has_older = selectors.transcript_page(session, limit=50)
        [list(m.function_calls.all()) for m in messages]
    assert len(messages) == 50 and has_older


def test_message_with_call_and_checkpointed_text(session):
    run = make_run(session)
    message = Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text="so far")
    assert selectors.message_with_call(message.id) == message
    assert selectors.message_with_call(10**9) is None
    assert selectors.checkpointed_text(message.id) == "so far"
    assert selectors.checkpointed_text(10**9) == ""


def test_run_calls_approvals_and_steering_oldest_first(session, user):
    approval = park_on_approval(session)
    run = approval.run
    [second] = add_calls(run, ("clock", {}))
    assert [c.call_id for c in selectors.run_calls(run)] == ["call_t1_0", second.call_id]
    assert selectors.run_approvals(run) == [approval] and selectors.run_approvals(None) == []
    steering = SteeringMessage.objects.create(session=session, run=run, text="also this", created_by=user)
    assert selectors.run_steering(run) == [steering] and selectors.run_steering(None) == []
