"""function_prepare: give each requested call its tool's approval policy (or drop them all on stop)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from ... import events
from ...models import Approval, CallStatus, FunctionCall, Run, RunState
from ...services.calls import call_finish, cancelled_result
from ...tools.schema import validate_arguments
from ..context import StepContext, Tx


async def handle(ctx: StepContext, run: Run) -> Run:
    def write(tx: Tx) -> str:
        pending = list(FunctionCall.objects.filter(run=tx.run, status=CallStatus.PENDING).order_by("position"))
        if tx.run.stop_requested:
            for call in pending:
                tx.emit(*_finish(tx, call, CallStatus.CANCELLED, cancelled_result(by=tx.stopped_by)))
            return RunState.STEERING_CHECK
        asked = False
        for call in pending:
            tool = ctx.tools.get(call.name)
            if tool is None:
                tx.emit(*_finish(tx, call, CallStatus.FAILED, f"error: unknown tool {call.name!r}"))
            elif errors := validate_arguments(call.arguments, tool.parameters):
                tx.emit(*_finish(tx, call, CallStatus.FAILED, "error: invalid arguments: " + "; ".join(errors)))
            elif tool.approval == "deny":
                tx.emit(*_finish(tx, call, CallStatus.DENIED, "denied by policy"))
            elif tool.approval == "ask":
                call.status = CallStatus.AWAITING_APPROVAL
                call.save(update_fields=["status"])
                approval = Approval.objects.create(
                    run=tx.run, function_call=call, created_at=tx.now,
                    expires_at=tx.now + timedelta(seconds=settings.HARNESS_APPROVAL_TTL_SECONDS),
                )
                tx.emit(events.approval_requested(approval=approval, call=call))
                asked = True
            else:
                call.status = CallStatus.APPROVED
                call.save(update_fields=["status"])
        return RunState.AWAITING_APPROVAL if asked else RunState.FUNCTION_EXECUTE

    return await ctx.advance(write)


def _finish(tx: Tx, call: FunctionCall, status: str, result: str) -> list[events.Event]:
    return call_finish(call=call, session_id=tx.run.session_id, status=status, result=result, now=tx.now)
