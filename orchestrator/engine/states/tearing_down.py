"""tearing_down: repair the transcript, write the receipt, and end the run — all in one transaction.

Repair makes the history well-formed for the next model call: a partial answer keeps its text (status
`stopped`), every call without a result gets a synthetic one, pending approvals are swept, and queued
steering is marked not applied (and shown as such). The terminal `run.finished` event is published only
after this commits, so a client never hears "finished" before the transcript is saved.
"""

from __future__ import annotations

from ... import events
from ...models import (
    CALL_FINISHED_STATES,
    CallStatus,
    FunctionCall,
    Message,
    MessageStatus,
    Run,
    RunOutcome,
    SteeringMessage,
    SteeringStatus,
)
from ...services.approvals import approval_sweep
from ...services.calls import SERVER_NOTIFIED, call_finish, cancel_note, cancelled_result
from ..context import StepContext, Tx
from .function_execute import INTERRUPTED_RESULT


async def handle(ctx: StepContext, run: Run) -> Run:
    return await ctx.advance(tear_down)


def tear_down(tx: Tx) -> str:
    run = tx.run
    outcome = run.outcome or RunOutcome.COMPLETED
    if run.stop_requested and outcome == RunOutcome.COMPLETED:
        outcome = RunOutcome.STOPPED  # the stop was accepted while we were finishing: honour it
    reason = {RunOutcome.STOPPED: "run_stopped", RunOutcome.FAILED: "run_failed"}.get(outcome, "run_completed")

    for message in Message.objects.filter(run=run, status=MessageStatus.STREAMING):
        message.status = MessageStatus.STOPPED if outcome == RunOutcome.STOPPED else MessageStatus.ERROR
        message.updated_at = tx.now
        message.save(update_fields=["status", "updated_at"])
        tx.emit(events.message_completed(message=message))

    if outcome == RunOutcome.STOPPED:
        unfinished_result = cancelled_result(by=tx.stopped_by)
    else:
        unfinished_result = f"cancelled: run {outcome}" + (f" ({run.error})" if run.error else "")
    for call in FunctionCall.objects.filter(run=run).exclude(status__in=CALL_FINISHED_STATES):
        status, result = CallStatus.CANCELLED, unfinished_result
        if call.status == CallStatus.RUNNING:  # left by a dead executor: it may have partly run
            status, result = CallStatus.INTERRUPTED, INTERRUPTED_RESULT
        tx.emit(*call_finish(call=call, session_id=run.session_id, status=status, result=result, now=tx.now))

    tx.emit(*approval_sweep(run=run, reason=reason, now=tx.now))

    for steering in SteeringMessage.objects.select_related("created_by").filter(run=run, status=SteeringStatus.QUEUED):
        steering.status, steering.reason, steering.resolved_at = SteeringStatus.DISCARDED, reason, tx.now
        steering.save(update_fields=["status", "reason", "resolved_at"])
        tx.emit(events.steering_changed(steering=steering))
        tx.add_notice(f"Not applied (the run had ended): {steering.text}")

    run.outcome = outcome
    run.finished_at = tx.now
    if outcome == RunOutcome.STOPPED and not run.stop_reason:
        run.stop_reason = "user"
    run.receipt = build_receipt(run)
    tx.emit(events.run_finished(run=run))
    return outcome


def build_receipt(run: Run) -> dict:
    calls = list(FunctionCall.objects.filter(run=run).order_by("created_at", "position"))

    def summary(call: FunctionCall) -> dict:
        entry = {"call_id": call.call_id, "name": call.name, "status": call.status}
        if note := cancel_note(call):  # what the tool said of its cancellation (an MCP server's: notified or not)
            entry["note"] = note
        return entry

    def notified(call: FunctionCall) -> bool:
        return call.status == CallStatus.CANCELLED and cancel_note(call) == SERVER_NOTIFIED

    stop = None
    if run.stop_requested_at:
        stop = {
            "requested_at": run.stop_requested_at.isoformat(),
            "requested_by": run.stop_requested_by.get_username() if run.stop_requested_by else None,
            "acknowledged_at": run.stop_acknowledged_at.isoformat() if run.stop_acknowledged_at else None,
            "terminal_at": run.finished_at.isoformat() if run.finished_at else None,
            "latency_ms": run.stop_latency_ms,
        }
    return {
        "outcome": run.outcome,
        "model": run.model or None,
        "turns": run.turn_count,
        "completed_calls": [summary(c) for c in calls if c.status in (CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.DENIED)],
        # Never started, or cancelled mid-call with the (MCP) server told to cancel it ("note": "server notified").
        "cancelled_calls": [
            summary(c) for c in calls if c.status == CallStatus.CANCELLED and (not c.started_at or notified(c))
        ],
        # Cancelled mid-execution with no one told, or left running by a dead worker: side effects may exist.
        "partly_run_calls": [
            summary(c) for c in calls
            if c.status == CallStatus.INTERRUPTED or (c.status == CallStatus.CANCELLED and c.started_at and not notified(c))
        ],
        "usage": {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "estimated": run.usage_estimated},
        "stop": stop,
        "stop_reason": run.stop_reason or None,
        "error": run.error or None,
    }
