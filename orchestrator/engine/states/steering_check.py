"""steering_check, in priority order: stop → steering → continue after tool results → end."""

from __future__ import annotations

from ... import events
from ...models import Message, MessageRole, Run, RunOutcome, RunState, SteeringMessage, SteeringStatus
from ..context import StepContext, Tx


async def handle(ctx: StepContext, run: Run) -> Run:
    def write(tx: Tx) -> str:
        run = tx.run
        if run.stop_requested:
            run.outcome = RunOutcome.STOPPED
            return RunState.TEARING_DOWN
        queued = list(SteeringMessage.objects.select_related("created_by")
                      .filter(run=run, status=SteeringStatus.QUEUED).order_by("created_at"))
        if queued:
            for steering in queued:
                tx.add_message(role=MessageRole.USER, text=steering.text, author=steering.created_by)
                steering.status, steering.resolved_at = SteeringStatus.APPLIED, tx.now
                steering.save(update_fields=["status", "resolved_at"])
                tx.emit(events.steering_changed(steering=steering))
            return RunState.AWAITING_ASSISTANT
        last = Message.objects.filter(run=run).exclude(role=MessageRole.SYSTEM).order_by("-id").first()
        if last is not None and last.role == MessageRole.TOOL:
            return RunState.AWAITING_ASSISTANT  # the model has tool results to read
        run.outcome = RunOutcome.COMPLETED
        return RunState.TEARING_DOWN

    return await ctx.advance(write)
