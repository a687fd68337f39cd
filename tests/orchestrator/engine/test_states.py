"""State handlers, one step at a time: each test holds the run's lease and calls one handler directly.

These port the seed's abort tests (awaiting → steering_check without a turn burnt, prepare drops pending
calls, execute dispatches nothing after a stop) and check each handler's normal path too, so every
"does not happen" is next to proof that it could.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.engine.context import Interrupt, StepContext
from orchestrator.engine.states import (
    assistant_finished,
    awaiting_approval,
    awaiting_assistant,
    function_execute,
    function_prepare,
    provisioning,
    steering_check,
    tearing_down,
)
from orchestrator.models import (
    Approval,
    CallStatus,
    FunctionCall,
    Message,
    MessageRole,
    MessageStatus,
    Run,
    RunState,
    SteeringMessage,
)
from orchestrator.providers.scripted import ScriptedProvider
from orchestrator.tools.registry import get_registry
from tests.helpers import db
from tests.tools import side_effects

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "test-executor"


def make_run(session, state: str, *, stop: bool = False, turn_count: int = 0, max_turns: int = 5, user=None) -> Run:
    return Run.objects.create(
        session=session, state=state, turn_count=turn_count, max_turns=max_turns, executor_id=OWNER,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
        stop_requested_at=timezone.now() if stop else None, stop_requested_by=user if stop else None,
    )


def make_ctx(run: Run) -> StepContext:
    return StepContext(run_id=run.id, executor_id=OWNER, interrupt=Interrupt(), provider=ScriptedProvider(), tools=get_registry())


def add_calls(run: Run, *specs: tuple[str, dict], status: str = CallStatus.PENDING) -> list[FunctionCall]:
    message = Message.objects.create(session_id=run.session_id, run=run, role=MessageRole.ASSISTANT, text="calling")
    return [
        FunctionCall.objects.create(run=run, message=message, call_id=f"c{i}", position=i, name=name, arguments=args,
                                    status=status)
        for i, (name, args) in enumerate(specs)
    ]


@pytest.mark.parametrize("stop, expected", [(False, RunState.AWAITING_ASSISTANT), (True, RunState.STEERING_CHECK)])
async def test_provisioning_honours_a_stop_that_landed_before_it(session, user, stop, expected):
    run = await db(make_run, session, RunState.PROVISIONING, stop=stop, user=user)
    after = await provisioning.handle(make_ctx(run), run)
    assert after.state == expected
    assert (await db(Run.objects.get, pk=run.pk)).stop_requested == stop  # nothing clears the flag


async def test_awaiting_assistant_counts_a_turn_when_not_stopped(session, user):
    run = await db(make_run, session, RunState.AWAITING_ASSISTANT, turn_count=1)
    after = await awaiting_assistant.handle(make_ctx(run), run)
    assert (after.state, after.turn_count) == (RunState.ASSISTANT_STREAMING, 2)


async def test_awaiting_assistant_on_stop_goes_to_steering_check_without_burning_a_turn(session, user):
    run = await db(make_run, session, RunState.AWAITING_ASSISTANT, turn_count=1, stop=True, user=user)
    after = await awaiting_assistant.handle(make_ctx(run), run)
    assert (after.state, after.turn_count) == (RunState.STEERING_CHECK, 1)
    assert after.stop_acknowledged_at is not None


async def test_awaiting_assistant_at_max_turns_says_so_and_tears_down(session, user):
    run = await db(make_run, session, RunState.AWAITING_ASSISTANT, turn_count=3, max_turns=3)
    after = await awaiting_assistant.handle(make_ctx(run), run)
    assert (after.state, after.outcome, after.turn_count) == (RunState.TEARING_DOWN, "stopped", 3)
    texts = await db(lambda: list(Message.objects.filter(run=run).values_list("text", flat=True)))
    assert texts == ["stopped: max turns (3) reached"]


@pytest.mark.parametrize("stop, expected", [(False, RunState.FUNCTION_PREPARE), (True, RunState.STEERING_CHECK)])
async def test_assistant_finished_routes_pending_calls(session, user, stop, expected):
    run = await db(make_run, session, RunState.ASSISTANT_FINISHED, stop=stop, user=user)
    await db(add_calls, run, ("clock", {}))
    after = await assistant_finished.handle(make_ctx(run), run)
    assert after.state == expected


async def test_function_prepare_applies_each_tools_policy(session, user):
    run = await db(make_run, session, RunState.FUNCTION_PREPARE)
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
    run = await db(make_run, session, RunState.FUNCTION_PREPARE, stop=True, user=user)
    await db(add_calls, run, ("clock", {}), ("shell", {"command": "true"}))
    after = await function_prepare.handle(make_ctx(run), run)
    assert after.state == RunState.STEERING_CHECK
    calls = await db(lambda: list(FunctionCall.objects.filter(run=run).values_list("status", "result")))
    assert calls == [(CallStatus.CANCELLED, "cancelled: run stopped by alice")] * 2
    assert await db(lambda: Approval.objects.filter(run=run).count()) == 0


async def test_awaiting_approval_parks_and_releases_the_lease_while_a_person_decides(session):
    run = await db(make_run, session, RunState.AWAITING_APPROVAL)
    (call,) = await db(add_calls, run, ("shell", {"command": "true"}), status=CallStatus.AWAITING_APPROVAL)
    await db(Approval.objects.create, run=run, function_call=call, expires_at=timezone.now() + timedelta(minutes=5))
    ctx = make_ctx(run)
    after = await awaiting_approval.handle(ctx, run)
    assert ctx.parked and after.state == RunState.AWAITING_APPROVAL
    assert (after.executor_id, after.lease_expires_at) == ("", None)


async def test_awaiting_approval_expires_overdue_approvals_and_continues(session):
    run = await db(make_run, session, RunState.AWAITING_APPROVAL)
    (call,) = await db(add_calls, run, ("shell", {"command": "true"}), status=CallStatus.AWAITING_APPROVAL)
    approval = await db(Approval.objects.create, run=run, function_call=call,
                        expires_at=timezone.now() - timedelta(seconds=1))
    ctx = make_ctx(run)
    after = await awaiting_approval.handle(ctx, run)
    assert not ctx.parked and after.state == RunState.FUNCTION_EXECUTE
    assert (await db(Approval.objects.get, pk=approval.pk)).status == "expired"
    call = await db(FunctionCall.objects.get, pk=call.pk)
    assert (call.status, call.result) == (CallStatus.DENIED, "denied: the approval request expired")


async def test_function_execute_runs_one_call_per_step_marking_it_running_first(session, settings):
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE)
    first, second = await db(add_calls, run, ("side_effect", {"label": "a"}), ("side_effect", {"label": "b"}),
                             status=CallStatus.APPROVED)
    ctx = make_ctx(run)
    after = await function_execute.handle(ctx, run)
    assert after.state == RunState.FUNCTION_EXECUTE
    workspace = settings.HARNESS_WORKSPACE_ROOT / str(session.id)
    assert side_effects(workspace) == ["a"]
    first = await db(FunctionCall.objects.get, pk=first.pk)
    assert (first.status, first.result) == (CallStatus.SUCCEEDED, "did a") and first.started_at is not None
    after = await function_execute.handle(ctx, after)
    after = await function_execute.handle(ctx, after)
    assert after.state == RunState.FUNCTION_FINALIZE
    assert side_effects(workspace) == ["a", "b"]


async def test_function_execute_after_a_stop_dispatches_no_further_call(session, user, settings):
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE)
    first, second = await db(add_calls, run, ("side_effect", {"label": "a"}), ("side_effect", {"label": "b"}),
                             status=CallStatus.APPROVED)
    ctx = make_ctx(run)
    after = await function_execute.handle(ctx, run)  # runs "a"
    await db(Run.objects.filter(pk=run.pk).update, stop_requested_at=timezone.now(), stop_requested_by=user)
    after = await function_execute.handle(ctx, after)
    assert after.state == RunState.STEERING_CHECK
    workspace = settings.HARNESS_WORKSPACE_ROOT / str(session.id)
    assert side_effects(workspace) == ["a"]
    assert (await db(FunctionCall.objects.get, pk=second.pk)).status == CallStatus.APPROVED  # never started
    after = await steering_check.handle(ctx, after)
    after = await tearing_down.handle(ctx, after)
    second = await db(FunctionCall.objects.get, pk=second.pk)
    assert (after.state, second.status, second.result) == ("stopped", "cancelled", "cancelled: run stopped by alice")
    assert after.receipt["cancelled_calls"] == [{"call_id": "c1", "name": "side_effect", "status": "cancelled"}]
    assert after.receipt["completed_calls"][0]["call_id"] == "c0"


async def test_function_execute_closes_a_call_a_dead_executor_left_running_without_rerunning_it(session, settings):
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE)
    (call,) = await db(add_calls, run, ("side_effect", {"label": "a"}), status=CallStatus.RUNNING)
    after = await function_execute.handle(make_ctx(run), run)
    assert after.state == RunState.FUNCTION_FINALIZE
    call = await db(FunctionCall.objects.get, pk=call.pk)
    assert call.status == CallStatus.INTERRUPTED and "may have partly run" in call.result
    assert side_effects(settings.HARNESS_WORKSPACE_ROOT / str(session.id)) == []


async def test_function_execute_reruns_an_idempotent_call_a_dead_executor_left_running(session):
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE)
    (call,) = await db(add_calls, run, ("calculator", {"expression": "6*7"}), status=CallStatus.RUNNING)
    await function_execute.handle(make_ctx(run), run)
    call = await db(FunctionCall.objects.get, pk=call.pk)
    assert (call.status, call.result) == (CallStatus.SUCCEEDED, "42")


async def test_steering_check_priorities(session, user):
    # Queued steering is applied as user messages and starts a new assistant turn ...
    run = await db(make_run, session, RunState.STEERING_CHECK)
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


async def test_tearing_down_repairs_the_transcript_in_one_transaction(session, user):
    run = await db(make_run, session, RunState.TEARING_DOWN, stop=True, user=user, turn_count=1)
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
