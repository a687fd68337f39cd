"""steering_check: queued steering becomes user messages and a new turn; tool results go back to the model;
a stop beats both (queued steering stays queued, for teardown to report as not applied)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from orchestrator.engine.states import steering_check, tearing_down
from orchestrator.models import CallStatus, Message, Run, RunState, SteeringMessage
from tests.factories import add_calls, make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_steering_check_priorities(session, user):
    # Queued steering is applied as user messages and starts a new assistant turn ...
    run = await db(make_run, session, RunState.STEERING_CHECK, leased_by=EXECUTOR)
    steering = await db(SteeringMessage.objects.create, session=session, run=run, text="also do X")
    after = await steering_check.handle(make_ctx(run), run)
    assert after.state == RunState.AWAITING_ASSISTANT
    assert (await db(SteeringMessage.objects.get, pk=steering.pk)).status == "applied"
    assert await db(lambda: Message.objects.filter(run=run, role="user").last().text) == "also do X"
    # ... tool results send it back to the model ...
    await db(Run.objects.filter(pk=run.pk).update, state=RunState.STEERING_CHECK)
    (call,) = await db(add_calls, run, ("clock", {}), status=CallStatus.SUCCEEDED)
    await db(Message.objects.create, session=session, run=run, role="tool", text="12:00", function_call=call)
    after = await steering_check.handle(make_ctx(run), await db(Run.objects.get, pk=run.pk))
    assert after.state == RunState.AWAITING_ASSISTANT
    # ... and stop beats both: queued steering stays queued for teardown to report as not applied.
    await db(Run.objects.filter(pk=run.pk).update, state=RunState.STEERING_CHECK, stop_requested_at=timezone.now())
    late = await db(SteeringMessage.objects.create, session=session, run=run, text="too late")
    after = await steering_check.handle(make_ctx(run), await db(Run.objects.get, pk=run.pk))
    assert (after.state, after.outcome) == (RunState.TEARING_DOWN, "stopped")
    after = await tearing_down.handle(make_ctx(run), after)
    late = await db(SteeringMessage.objects.get, pk=late.pk)
    assert (late.status, late.reason) == ("discarded", "run_stopped")
    notices = await db(lambda: list(Message.objects.filter(run=run, role="system").values_list("text", flat=True)))
    assert "Not applied (the run had ended): too late" in notices
