"""Approval decisions: conditional updates, so racing decisions have one winner and closed ones stay closed."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from orchestrator.models import Approval, CallStatus, FunctionCall, Message, Run, RunState
from orchestrator.services.approvals import approval_decide
from orchestrator.services.errors import NotFound
from orchestrator.services.runs import run_stop

pytestmark = pytest.mark.django_db(transaction=True)


def approval_for(session, *, expires_in: float = 300) -> Approval:
    run = Run.objects.create(session=session, state=RunState.AWAITING_APPROVAL, max_turns=5, turn_count=1)
    message = Message.objects.create(session=session, run=run, role="assistant", text="")
    call = FunctionCall.objects.create(run=run, message=message, call_id="c1", name="shell",
                                       arguments={"command": "ls"}, status=CallStatus.AWAITING_APPROVAL)
    return Approval.objects.create(run=run, function_call=call,
                                   expires_at=timezone.now() + timedelta(seconds=expires_in))


def test_approve_marks_the_call_approved(session, user):
    approval = approval_for(session)
    assert approval_decide(approval_id=approval.id, user=user, decision="approve").as_dict() == {
        "accepted": True, "reason": None}
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by) == ("approved", user)
    assert FunctionCall.objects.get(pk=approval.function_call_id).status == "approved"


def test_deny_closes_the_call_with_a_result_the_model_reads(session, user):
    approval = approval_for(session)
    assert approval_decide(approval_id=str(approval.id), user=user, decision="deny").accepted
    call = FunctionCall.objects.get(pk=approval.function_call_id)
    assert (call.status, call.result) == ("denied", "denied by alice")
    assert Message.objects.get(function_call=call).text == "denied by alice"


def test_racing_decisions_have_exactly_one_winner(session, user):
    approval = approval_for(session)

    def decide(index: int):
        try:
            return approval_decide(approval_id=approval.id, user=user, decision="approve" if index % 2 else "deny")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(decide, range(20)))
    winners = [r for r in results if r.accepted]
    assert len(winners) == 1
    assert all(r.reason == "approval_closed" for r in results if not r.accepted)
    approval.refresh_from_db()
    call = FunctionCall.objects.get(pk=approval.function_call_id)
    assert (approval.status, call.status) in {("approved", "approved"), ("denied", "denied")}
    assert Message.objects.filter(function_call=call).count() == (1 if call.status == "denied" else 0)


def test_a_decision_after_the_stop_sweep_is_closed_and_changes_nothing(session, user):
    approval = approval_for(session)
    assert run_stop(session_id=session.id, requested_by=user).accepted
    assert approval_decide(approval_id=approval.id, user=user, decision="approve").as_dict() == {
        "accepted": False, "reason": "approval_closed"}
    approval.refresh_from_db()
    assert (approval.status, approval.reason) == ("swept", "run_stopped")
    assert FunctionCall.objects.get(pk=approval.function_call_id).status == "awaiting_approval"  # never approved


def test_an_overdue_approval_expires_instead_of_being_decided(session, user):
    approval = approval_for(session, expires_in=-1)
    assert approval_decide(approval_id=approval.id, user=user, decision="approve").reason == "approval_closed"
    approval.refresh_from_db()
    call = FunctionCall.objects.get(pk=approval.function_call_id)
    assert (approval.status, call.status, call.result) == ("expired", "denied", "denied: the approval request expired")


def test_another_users_approval_is_as_unknown_as_a_missing_one(session, other_user):
    approval = approval_for(session)
    for approval_id in (approval.id, uuid.uuid4(), "not-a-uuid", None):
        with pytest.raises(NotFound):
            approval_decide(approval_id=approval_id, user=other_user, decision="approve")
    approval.refresh_from_db()
    assert approval.status == "pending"
