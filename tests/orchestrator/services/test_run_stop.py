"""The stop contract of `run_stop`: typed, idempotent, run-scoped, atomic with the sweep, never a false success.

These are synchronous tests of the service against the real database and the real in-memory channel layer;
the wake-up is read back from the `orchestrator` channel the worker listens on.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import OperationalError, connections
from django.utils import timezone

from orchestrator.models import Approval, CallStatus, FunctionCall, Message, Run, RunState
from orchestrator.services import runs as run_services
from orchestrator.services.runs import run_start, run_stop
from orchestrator.services.sessions import session_create
from orchestrator.wakeups import ORCHESTRATOR_CHANNEL

pytestmark = pytest.mark.django_db(transaction=True)


def wakeups() -> list[dict]:
    """Drain the wake-up messages sent to the orchestrator channel."""
    layer = get_channel_layer()
    queue = layer.channels.get(ORCHESTRATOR_CHANNEL)
    received = []
    while queue is not None and not queue.empty():
        received.append(async_to_sync(layer.receive)(ORCHESTRATOR_CHANNEL))
    return received


def parked_run(session) -> tuple[Run, Approval]:
    """A run parked on an approval of a `shell` call (nobody drives it)."""
    run = Run.objects.create(session=session, state=RunState.AWAITING_APPROVAL, max_turns=5, turn_count=1)
    message = Message.objects.create(session=session, run=run, role="assistant", text="")
    call = FunctionCall.objects.create(run=run, message=message, call_id="c1", name="shell",
                                       arguments={"command": "ls"}, status=CallStatus.AWAITING_APPROVAL)
    approval = Approval.objects.create(run=run, function_call=call, expires_at=timezone.now() + timedelta(minutes=5))
    return run, approval


def test_stop_requires_a_session(user):
    for missing in (None, "", "not-a-uuid", str(uuid.uuid4())):
        assert run_stop(session_id=missing, requested_by=user).as_dict() == {
            "accepted": False, "reason": "no_record", "prior_state": None, "run_id": None,
        }


def test_unknown_session_and_foreign_session_are_indistinguishable_and_change_nothing(session, user, other_user):
    run, approval = parked_run(session)
    wakeups()
    unknown = run_stop(session_id=uuid.uuid4(), requested_by=other_user)
    foreign = run_stop(session_id=session.id, requested_by=other_user)
    assert unknown == foreign == run_services.NO_RECORD
    run.refresh_from_db()
    approval.refresh_from_db()
    assert (run.stop_requested_at, approval.status) == (None, "pending")
    assert wakeups() == []
    # The owner's stop of the same session is what could have happened:
    assert run_stop(session_id=session.id, requested_by=user).accepted


def test_session_without_runs_is_no_record(session, user):
    assert run_stop(session_id=session.id, requested_by=user) == run_services.NO_RECORD


def test_happy_path_sets_the_flag_sweeps_approvals_and_wakes_the_executor(session, user):
    run, approval = parked_run(session)
    wakeups()
    result = run_stop(session_id=session.id, requested_by=user)
    assert result.as_dict() == {"accepted": True, "reason": None, "prior_state": "awaiting_approval", "run_id": str(run.id)}
    run.refresh_from_db()
    approval.refresh_from_db()
    assert run.stop_requested_at is not None and run.stop_requested_by == user and run.stop_reason == "user"
    assert (approval.status, approval.reason) == ("swept", "run_stopped")
    assert wakeups() == [{"type": "run.stop", "run_id": str(run.id)}]


def test_wake_up_goes_to_the_executor_holding_the_lease(session, user):
    run, _ = parked_run(session)
    Run.objects.filter(pk=run.pk).update(executor_id="w1", lease_channel="orchestrator.w1!abc",
                                         lease_expires_at=timezone.now() + timedelta(seconds=10))
    run_stop(session_id=session.id, requested_by=user)
    message = async_to_sync(get_channel_layer().receive)("orchestrator.w1!abc")
    assert message == {"type": "run.stop", "run_id": str(run.id)}


def test_repeated_stop_is_idempotent(session, user):
    run, approval = parked_run(session)
    wakeups()
    first = run_stop(session_id=session.id, requested_by=user)
    run.refresh_from_db()
    flagged_at = run.stop_requested_at
    second = run_stop(session_id=session.id, requested_by=user)
    assert first.reason is None
    assert second.as_dict() == {"accepted": True, "reason": "already_stopping", "prior_state": "awaiting_approval",
                                "run_id": str(run.id)}
    run.refresh_from_db()
    assert run.stop_requested_at == flagged_at
    assert len(wakeups()) == 1  # the side effects happened once


def test_already_stopped_short_circuits(session, user):
    run = Run.objects.create(session=session, state=RunState.STOPPED, outcome="stopped", max_turns=5)
    wakeups()
    result = run_stop(session_id=session.id, requested_by=user)
    assert result.as_dict() == {"accepted": False, "reason": "already_stopped", "prior_state": "stopped",
                                "run_id": str(run.id)}
    run.refresh_from_db()
    assert run.stop_requested_at is None
    assert wakeups() == []


def test_a_stop_pinned_to_an_old_run_never_stops_the_newer_one(session, user):
    old = Run.objects.create(session=session, state=RunState.COMPLETED, outcome="completed", max_turns=5)
    new = run_start(session_id=session.id, user=user, text="hello")
    stale = run_stop(session_id=session.id, requested_by=user, run_id=str(old.id))
    assert (stale.accepted, stale.reason, stale.run_id) == (False, "already_stopped", str(old.id))
    new.refresh_from_db()
    assert new.stop_requested_at is None
    pinned = run_stop(session_id=session.id, requested_by=user, run_id=str(new.id))
    assert (pinned.accepted, pinned.reason, pinned.prior_state) == (True, None, "provisioning")
    assert run_stop(session_id=session.id, requested_by=user, run_id=str(uuid.uuid4())) == run_services.NO_RECORD


def test_the_flag_is_run_scoped_and_a_new_run_starts_clean(session, user):
    first = run_start(session_id=session.id, user=user, text="one")
    run_stop(session_id=session.id, requested_by=user)
    Run.objects.filter(pk=first.pk).update(state=RunState.STOPPED, outcome="stopped")
    second = run_start(session_id=session.id, user=user, text="two")
    assert second.stop_requested_at is None
    first.refresh_from_db()
    assert first.stop_requested_at is not None  # nothing clears a run's flag


def test_a_failed_stop_transaction_is_never_a_false_success(session, user, monkeypatch):
    run, approval = parked_run(session)
    wakeups()

    def sweep_fails(**kwargs):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(run_services, "approval_sweep", sweep_fails)
    result = run_stop(session_id=session.id, requested_by=user)
    assert result.as_dict() == {"accepted": False, "reason": "store_unavailable", "prior_state": None, "run_id": None}
    run.refresh_from_db()
    approval.refresh_from_db()
    # The flag write was rolled back with the failed sweep: nothing half-done, and nothing woken.
    assert (run.stop_requested_at, approval.status) == (None, "pending")
    assert wakeups() == []


def test_fifty_concurrent_stops_give_exactly_one_first_stop(session, user):
    run = run_start(session_id=session.id, user=user, text="hello")
    wakeups()

    def stop_once(_):
        try:
            return run_stop(session_id=session.id, requested_by=user)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(stop_once, range(50)))
    reasons = sorted((r.reason or "first") for r in results)
    assert reasons == ["already_stopping"] * 49 + ["first"]
    assert all(r.accepted and r.run_id == str(run.id) for r in results)
    assert len(wakeups()) == 1


def test_admin_stop_skips_the_ownership_check(session, other_user):
    run = Run.objects.create(session=session, state=RunState.FUNCTION_EXECUTE, max_turns=5)
    assert run_stop(session_id=session.id, requested_by=other_user) == run_services.NO_RECORD
    result = run_stop(session_id=session.id, requested_by=other_user, run_id=str(run.id), as_admin=True)
    assert (result.accepted, result.reason) == (True, None)
    run.refresh_from_db()
    assert (run.stop_requested_by, run.stop_reason) == (other_user, "admin")


def test_stop_on_another_users_session_with_the_same_title_is_no_record(user, other_user):
    mine = session_create(owner=user, title="same")
    theirs = session_create(owner=other_user, title="same")
    run_start(session_id=theirs.id, user=other_user, text="hi")
    assert run_stop(session_id=theirs.id, requested_by=user) == run_services.NO_RECORD
    assert run_stop(session_id=mine.id, requested_by=user) == run_services.NO_RECORD
