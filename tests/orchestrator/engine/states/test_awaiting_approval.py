"""awaiting_approval: parks the run (lease released) while a person decides; overdue approvals expire, their
calls denied, and the run goes on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.engine.states import awaiting_approval
from orchestrator.models import Approval, CallStatus, FunctionCall, RunState
from tests.factories import park_on_approval
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_awaiting_approval_parks_and_releases_the_lease_while_a_person_decides(session):
    approval = await db(park_on_approval, session, expires_in=timedelta(minutes=5), leased_by=EXECUTOR)
    run = approval.run
    ctx = make_ctx(run)
    after = await awaiting_approval.handle(ctx, run)
    assert ctx.parked and after.state == RunState.AWAITING_APPROVAL
    assert (after.executor_id, after.lease_expires_at) == ("", None)


async def test_awaiting_approval_expires_overdue_approvals_and_continues(session):
    approval = await db(park_on_approval, session, expires_in=timedelta(seconds=-1), leased_by=EXECUTOR)
    run = approval.run
    ctx = make_ctx(run)
    after = await awaiting_approval.handle(ctx, run)
    assert not ctx.parked and after.state == RunState.FUNCTION_EXECUTE
    assert (await db(Approval.objects.get, pk=approval.pk)).status == "expired"
    call = await db(FunctionCall.objects.get, pk=approval.function_call_id)
    assert (call.status, call.result) == (CallStatus.DENIED, "denied: the approval request expired")
