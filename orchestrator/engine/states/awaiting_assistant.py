"""awaiting_assistant: the gate before a model call — the costliest step — checks stop and the turn limit."""

from __future__ import annotations

from ...models import MessageRole, Run, RunOutcome, RunState
from ..context import StepContext, Tx


def write(tx: Tx) -> str:
    run = tx.run
    if run.stop_requested:
        return RunState.STEERING_CHECK  # no model call, and no turn burnt
    if run.turn_count >= run.max_turns:
        tx.add_message(role=MessageRole.ASSISTANT, text=f"stopped: max turns ({run.max_turns}) reached")
        run.outcome = RunOutcome.STOPPED
        run.stop_reason = "max_turns"
        return RunState.TEARING_DOWN
    run.turn_count += 1
    return RunState.ASSISTANT_STREAMING


async def handle(ctx: StepContext, run: Run) -> Run:
    return await ctx.advance(write)
