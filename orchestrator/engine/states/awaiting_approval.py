"""awaiting_approval: continue once every approval is decided; otherwise park (no executor held).

Decisions, expiry and stop sweeps happen in services; a decision wakes the run, and the worker's recovery
scan finds parked runs whose approvals were all resolved or expired even if that wake-up was lost.
"""

from __future__ import annotations

from ...models import Approval, ApprovalStatus, Run, RunState
from ...services.approvals import approval_expire
from ..context import PARK, StepContext, Tx


async def handle(ctx: StepContext, run: Run) -> Run:
    def write(tx: Tx) -> str:
        if tx.run.stop_requested:
            return RunState.STEERING_CHECK
        pending = list(
            Approval.objects.filter(run=tx.run, status=ApprovalStatus.PENDING).select_related("function_call", "run")
        )
        still_waiting = False
        for approval in pending:
            if approval.expires_at > tx.now:
                still_waiting = True
                continue
            tx.emit(*approval_expire(approval=approval, now=tx.now))
        return PARK if still_waiting else RunState.FUNCTION_EXECUTE

    return await ctx.advance(write)
