"""function_finalize: every call of this turn has its result (and tool message); back to the model."""

from __future__ import annotations

from ...models import Run, RunState
from ..context import StepContext, Tx


async def handle(ctx: StepContext, run: Run) -> Run:
    def write(tx: Tx) -> str:
        return RunState.STEERING_CHECK

    return await ctx.advance(write)
