"""assistant_finished: did the model ask for tools?"""

from __future__ import annotations

from ...models import CallStatus, FunctionCall, Run, RunState
from ..context import StepContext, Tx


async def handle(ctx: StepContext, run: Run) -> Run:
    def write(tx: Tx) -> str:
        if tx.run.stop_requested:
            return RunState.STEERING_CHECK
        if FunctionCall.objects.filter(run=tx.run, status=CallStatus.PENDING).exists():
            return RunState.FUNCTION_PREPARE
        return RunState.STEERING_CHECK

    return await ctx.advance(write)
