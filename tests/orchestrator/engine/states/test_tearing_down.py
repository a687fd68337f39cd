"""tearing_down: the transcript repaired in one transaction (a partial answer kept as stopped, pending calls
cancelled, a running one marked partly run, a result per call), the lease released and the receipt written."""

from __future__ import annotations

import pytest
from django.utils import timezone

from orchestrator.engine.states import tearing_down
from orchestrator.models import CallStatus, FunctionCall, Message, MessageStatus, Run, RunState
from tests.factories import add_calls, make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_tearing_down_repairs_the_transcript_in_one_transaction(session, user):
    run = await db(make_run, session, RunState.TEARING_DOWN, leased_by=EXECUTOR, stopped_by=user, turn_count=1)
    await db(Run.objects.filter(pk=run.pk).update, outcome="stopped")
    partial = await db(Message.objects.create, session=session, run=run, role="assistant", text="half an ans",
                       status=MessageStatus.STREAMING)
    pending, running = await db(add_calls, run, ("clock", {}), ("side_effect", {}), status=CallStatus.APPROVED)
    await db(FunctionCall.objects.filter(pk=running.pk).update, status=CallStatus.RUNNING, started_at=timezone.now())
    after = await tearing_down.handle(make_ctx(run), await db(Run.objects.get, pk=run.pk))
    assert (after.state, after.outcome, after.executor_id) == ("stopped", "stopped", "")
    partial = await db(Message.objects.get, pk=partial.pk)
    assert (partial.status, partial.text) == ("stopped", "half an ans")
    statuses = await db(lambda: dict(FunctionCall.objects.filter(run=run).values_list("name", "status")))
    assert statuses == {"clock": "cancelled", "side_effect": "interrupted"}
    tool_results = await db(lambda: Message.objects.filter(run=run, role="tool").count())
    assert tool_results == 2
    receipt = after.receipt
    assert receipt["cancelled_calls"] == [{"call_id": "c0", "name": "clock", "status": "cancelled"}]
    assert receipt["partly_run_calls"] == [{"call_id": "c1", "name": "side_effect", "status": "interrupted"}]
    assert receipt["stop"]["requested_by"] == "alice" and receipt["stop"]["latency_ms"] is not None
