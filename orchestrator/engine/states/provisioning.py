"""provisioning: prepare the session's workspace. A stop that landed already is honoured, never erased."""

from __future__ import annotations

from ...models import Run, RunState
from ..context import StepContext, Tx
from ..workspace import session_workspace


async def handle(ctx: StepContext, run: Run) -> Run:
    session_workspace(run.session_id).mkdir(parents=True, exist_ok=True)

    def write(tx: Tx) -> str:
        if tx.run.stop_requested:
            return RunState.STEERING_CHECK
        return RunState.AWAITING_ASSISTANT

    return await ctx.advance(write)
