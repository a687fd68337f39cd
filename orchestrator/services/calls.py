"""Closing a function call: its status, its result, and the tool message the model will read.

Used inside the caller's transaction by the engine (results, cancellations, crash repair) and by the
approval services (denials), so every closed call has exactly one tool message.
"""

from __future__ import annotations

from datetime import datetime

from .. import events
from ..models import FunctionCall, Message, MessageRole, MessageStatus


def call_finish(*, call: FunctionCall, session_id, status: str, result: str, now: datetime) -> list[events.Event]:
    call.status = status
    call.result = result
    call.finished_at = now
    call.save(update_fields=["status", "result", "finished_at"])
    message = Message.objects.create(
        session_id=session_id, run_id=call.run_id, role=MessageRole.TOOL, text=result,
        status=MessageStatus.COMPLETE, function_call=call, created_at=now, updated_at=now,
    )
    return [events.function_finished(call=call), events.message_completed(message=message)]


def cancelled_result(*, by: str) -> str:
    return f"cancelled: run stopped by {by}"
