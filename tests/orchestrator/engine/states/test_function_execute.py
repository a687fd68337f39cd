"""function_execute: one approved call per step, marked running before it runs; after a stop no further call
is dispatched; a call a dead executor left running is closed (or, if idempotent, run again)."""

from __future__ import annotations

import asyncio

import pytest
from django.utils import timezone

from orchestrator.engine.states import function_execute, steering_check, tearing_down
from orchestrator.models import CallStatus, FunctionCall, Run, RunState
from tests.factories import add_calls, make_run
from tests.helpers import db, wait_until
from tests.tools import side_effects

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_function_execute_runs_one_call_per_step_marking_it_running_first(session, settings):
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE, leased_by=EXECUTOR)
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
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE, leased_by=EXECUTOR)
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
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE, leased_by=EXECUTOR)
    (call,) = await db(add_calls, run, ("side_effect", {"label": "a"}), status=CallStatus.RUNNING)
    after = await function_execute.handle(make_ctx(run), run)
    assert after.state == RunState.FUNCTION_FINALIZE
    call = await db(FunctionCall.objects.get, pk=call.pk)
    assert call.status == CallStatus.INTERRUPTED and "may have partly run" in call.result
    assert side_effects(settings.HARNESS_WORKSPACE_ROOT / str(session.id)) == []


async def test_function_execute_reruns_an_idempotent_call_a_dead_executor_left_running(session):
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE, leased_by=EXECUTOR)
    (call,) = await db(add_calls, run, ("calculator", {"expression": "6*7"}), status=CallStatus.RUNNING)
    await function_execute.handle(make_ctx(run), run)
    call = await db(FunctionCall.objects.get, pk=call.pk)
    assert (call.status, call.result) == (CallStatus.SUCCEEDED, "42")


async def test_a_must_finish_call_outlives_the_handlers_own_cancellation(session, settings):
    """A worker shutting down cancels its executors: a must_finish tool still completes before the handler's
    cancellation does — not orphaned, running unwatched — and the handler's wait on the stop is not left
    behind."""
    run = await db(make_run, session, RunState.FUNCTION_EXECUTE, leased_by=EXECUTOR)
    await db(add_calls, run, ("finishing", {"seconds": 0.5}), status=CallStatus.APPROVED)
    workspace = settings.HARNESS_WORKSPACE_ROOT / str(session.id)
    handler = asyncio.ensure_future(function_execute.handle(make_ctx(run), run))
    await wait_until(lambda: FunctionCall.objects.filter(status=CallStatus.RUNNING).exists(), what="the call to run")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any("Interrupt.wait" in repr(task) for task in asyncio.all_tasks()):  # the tool itself has started
        assert loop.time() < deadline, "the must_finish wait never began"
        await asyncio.sleep(0.005)
    assert not (workspace / "finished.txt").exists()  # half a second from done: a cancel now could orphan it
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert (workspace / "finished.txt").read_text(encoding="utf-8") == "finished"
    assert not [task for task in asyncio.all_tasks() if "Interrupt.wait" in repr(task) and not task.done()]
