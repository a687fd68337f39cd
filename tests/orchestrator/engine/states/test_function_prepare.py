"""function_prepare: each call gets its tool's policy (run, ask a person, deny, fail with a reason), every
call closed here gets its tool message; after a stop the pending calls are dropped, nothing asked."""

from __future__ import annotations

import pytest

from orchestrator.engine.states import function_prepare
from orchestrator.models import Approval, CallStatus, FunctionCall, Message, MessageRole, RunState
from tests.factories import add_calls, make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_function_prepare_applies_each_tools_policy(session, user):
    run = await db(make_run, session, RunState.FUNCTION_PREPARE, leased_by=EXECUTOR)
    await db(
        add_calls, run, ("clock", {}), ("shell", {"command": "true"}), ("forbidden", {}), ("nope", {}),
        ("calculator", {"expression": 7}),
    )
    after = await function_prepare.handle(make_ctx(run), run)
    assert after.state == RunState.AWAITING_APPROVAL
    calls = await db(lambda: {c.name: (c.status, c.result) for c in FunctionCall.objects.filter(run=run)})
    assert calls["clock"] == (CallStatus.APPROVED, "")
    assert calls["shell"] == (CallStatus.AWAITING_APPROVAL, "")
    assert calls["forbidden"] == (CallStatus.DENIED, "denied by policy")
    assert calls["nope"] == (CallStatus.FAILED, "error: unknown tool 'nope'")
    assert calls["calculator"][0] == CallStatus.FAILED and "must be of type string" in calls["calculator"][1]
    assert await db(lambda: Approval.objects.get(run=run).function_call.name) == "shell"
    # Every call that got a result has its tool message, so the model always sees a result per call.
    assert await db(lambda: Message.objects.filter(run=run, role=MessageRole.TOOL).count()) == 3


async def test_function_prepare_on_stop_drops_pending_calls(session, user):
    run = await db(make_run, session, RunState.FUNCTION_PREPARE, leased_by=EXECUTOR, stopped_by=user)
    await db(add_calls, run, ("clock", {}), ("shell", {"command": "true"}))
    after = await function_prepare.handle(make_ctx(run), run)
    assert after.state == RunState.STEERING_CHECK
    calls = await db(lambda: list(FunctionCall.objects.filter(run=run).values_list("status", "result")))
    assert calls == [(CallStatus.CANCELLED, "cancelled: run stopped by alice")] * 2
    assert await db(lambda: Approval.objects.filter(run=run).count()) == 0
