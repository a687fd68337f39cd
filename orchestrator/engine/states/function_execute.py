"""function_execute: run the approved calls one per step, checking stop before each.

A call is marked `running` (committed) before its tool starts and gets its result after, so whoever
resumes a crashed run can tell "never started" (still `approved`) from "may have run" (`running`). A
cancellable tool is cancelled the moment the run is stopped; a must_finish tool completes first.
"""

from __future__ import annotations

import asyncio
import time

from ... import events, metrics
from ...aio import complete_despite_cancel
from ...models import CallStatus, FunctionCall, Run, RunState
from ...services.calls import call_finish, cancelled_result
from ...tools.registry import Tool, ToolContext, ToolError
from ..context import StepContext, Tx
from ..workspace import session_workspace

INTERRUPTED_RESULT = (
    "interrupted: the worker running this call stopped before it finished; it may have partly run "
    "and was not re-run"
)


async def handle(ctx: StepContext, run: Run) -> Run:
    picked: dict[str, FunctionCall] = {}

    def start_next(tx: Tx) -> str:
        _close_calls_of_dead_executor(ctx, tx)
        if tx.run.stop_requested:
            return RunState.STEERING_CHECK
        call = FunctionCall.objects.filter(run=tx.run, status=CallStatus.APPROVED).order_by("created_at", "position").first()
        if call is None:
            return RunState.FUNCTION_FINALIZE
        call.status, call.started_at = CallStatus.RUNNING, tx.now
        call.save(update_fields=["status", "started_at"])
        tx.emit(events.function_started(call=call))
        picked["call"] = call
        return RunState.FUNCTION_EXECUTE

    run = await ctx.advance(start_next)
    call = picked.get("call")
    if call is None:
        return run
    tool = ctx.tools.get(call.name)
    if tool is None:  # prepared by another executor, and its MCP server cannot be reached from here now
        return await ctx.advance(_unavailable(call))
    tool_context = ToolContext(run_id=str(run.id), session_id=str(run.session_id), workspace=session_workspace(run.session_id))
    started = time.monotonic()
    interrupted, outcome = await _run_tool(ctx, run, tool, call, tool_context)
    duration = time.monotonic() - started

    def record(tx: Tx) -> str:
        if interrupted:
            status, result = CallStatus.CANCELLED, cancelled_result(by=tx.stopped_by, note=tool_context.cancel_note.note)
        else:
            status, result = outcome
        fresh = FunctionCall.objects.get(pk=call.pk)
        tx.emit(*call_finish(call=fresh, session_id=tx.run.session_id, status=status, result=result, now=tx.now))
        recorded["status"] = status
        return RunState.STEERING_CHECK if tx.run.stop_requested else RunState.FUNCTION_EXECUTE

    recorded: dict[str, str] = {}
    run = await ctx.advance(record)
    metrics.TOOL_CALLS.labels(tool=call.name, status=recorded["status"]).inc()
    metrics.TOOL_DURATION.labels(tool=call.name).observe(duration)
    return run


async def _run_tool(
    ctx: StepContext, run: Run, tool: Tool, call: FunctionCall, tool_context: ToolContext
) -> tuple[bool, tuple[str, str] | None]:
    work = _invoke(tool, call, tool_context)
    if tool.cancellation == "cancellable":
        return await ctx.preemptible(work)
    # must_finish: a stop does not cancel it; tell clients we are finishing it, then wait. Not even our own
    # cancellation (a shutting-down worker) cuts it short or leaves it running unwatched.
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(ctx.interrupt.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not ctx.interrupt.lease_lost:
            await events.publish(run.session_id, events.function_finishing(call=call))
        return False, await task
    finally:
        waiter.cancel()
        if await complete_despite_cancel(task):
            raise asyncio.CancelledError


async def _invoke(tool: Tool, call: FunctionCall, tool_context: ToolContext) -> tuple[str, str]:
    try:
        return CallStatus.SUCCEEDED, await tool.run(call.arguments, tool_context)
    except ToolError as exc:
        return CallStatus.FAILED, f"error: {exc}"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a tool bug must not take the run down with it
        return CallStatus.FAILED, f"error: {type(exc).__name__}: {exc}"


def _unavailable(call: FunctionCall):
    def write(tx: Tx) -> str:
        fresh = FunctionCall.objects.get(pk=call.pk)
        tx.emit(*call_finish(call=fresh, session_id=tx.run.session_id, status=CallStatus.FAILED,
                             result=f"error: the tool {call.name!r} is not available now", now=tx.now))
        return RunState.STEERING_CHECK if tx.run.stop_requested else RunState.FUNCTION_EXECUTE

    return write


def _close_calls_of_dead_executor(ctx: StepContext, tx: Tx) -> None:
    """A `running` call at the start of a step was left by an executor that died mid-call."""
    for call in FunctionCall.objects.filter(run=tx.run, status=CallStatus.RUNNING):
        tool = ctx.tools.get(call.name)
        if tool is not None and tool.idempotent and not tx.run.stop_requested:
            call.status, call.started_at = CallStatus.APPROVED, None
            call.save(update_fields=["status", "started_at"])
        else:
            tx.emit(
                *call_finish(call=call, session_id=tx.run.session_id, status=CallStatus.INTERRUPTED,
                             result=INTERRUPTED_RESULT, now=tx.now)
            )
