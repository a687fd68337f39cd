"""The transition table: one handler per state. A handler persists its transition and returns the run.

    provisioning         → awaiting_assistant | steering_check (stop)
    awaiting_assistant   → assistant_streaming | steering_check (stop) | tearing_down (max turns)
    assistant_streaming  → assistant_finished | steering_check (stop) | tearing_down (model error)
                           (its entry opens the answer: see CHAINED)
    assistant_finished   → function_prepare | steering_check
    function_prepare     → awaiting_approval | function_execute | steering_check (stop)
    awaiting_approval    → function_execute | steering_check (stop) | parked (nobody drives it)
    function_execute     → function_execute (next call) | function_finalize | steering_check (stop)
    function_finalize    → steering_check
    steering_check       → tearing_down (stop, or done) | awaiting_assistant (steering, tool results)
    tearing_down         → completed | stopped | failed
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.utils import timezone

from ..models import Run, RunOutcome, RunState
from .context import StepContext, Tx
from .states import (
    assistant_finished,
    assistant_streaming,
    awaiting_approval,
    awaiting_assistant,
    function_execute,
    function_finalize,
    function_prepare,
    provisioning,
    steering_check,
    tearing_down,
)

Handler = Callable[[StepContext, Run], Awaitable[Run]]

HANDLERS: dict[RunState, Handler] = {
    RunState.PROVISIONING: provisioning.handle,
    RunState.AWAITING_ASSISTANT: awaiting_assistant.handle,
    RunState.ASSISTANT_STREAMING: assistant_streaming.handle,
    RunState.ASSISTANT_FINISHED: assistant_finished.handle,
    RunState.FUNCTION_PREPARE: function_prepare.handle,
    RunState.AWAITING_APPROVAL: awaiting_approval.handle,
    RunState.FUNCTION_EXECUTE: function_execute.handle,
    RunState.FUNCTION_FINALIZE: function_finalize.handle,
    RunState.STEERING_CHECK: steering_check.handle,
    RunState.TEARING_DOWN: tearing_down.handle,
}


# States whose entry write runs in the transaction of the transition into them (StepContext.chain): the path
# from any step to a model call commits once — provisioning → awaiting_assistant → assistant_streaming with its
# answer opened is one transaction, and so is steering_check → … for the next turn. Each state still has its
# run.state event, in order; a stop or the turn limit ends the chain where it is seen, as the steps would.
CHAINED: dict[str, Callable[[Tx], str]] = {
    RunState.AWAITING_ASSISTANT: awaiting_assistant.write,
    RunState.ASSISTANT_STREAMING: assistant_streaming.open_turn,
}


def fail_write(error: str) -> Callable[[Tx], str]:
    """A write that ends the run as failed (through tearing_down, which repairs the transcript)."""

    def write(tx: Tx) -> str:
        tx.run.error = error
        tx.run.outcome = RunOutcome.FAILED
        tx.add_notice(f"Run failed: {error}")
        return RunState.TEARING_DOWN

    return write


def force_fail(*, run_id, executor_id: str, error: str) -> None:
    """Last resort when tearing down itself breaks: mark the run failed so it never hangs non-terminal."""
    now = timezone.now()
    Run.objects.filter(pk=run_id, executor_id=executor_id).update(
        state=RunState.FAILED, outcome=RunOutcome.FAILED, error=error, finished_at=now,
        executor_id="", lease_channel="", lease_expires_at=None,
    )
