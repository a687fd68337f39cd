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


# What a cancelled call's receipt entry says: the server was told to cancel it, or it may have partly run.
SERVER_NOTIFIED = "server notified"
MAY_HAVE_PARTLY_RUN = "may have partly run"


def cancelled_result(*, by: str, note: str = "") -> str:
    """The result of a call a stop cancelled; `note` is what the tool said of it ("server notified")."""
    return f"cancelled: run stopped by {by}" + (f" ({note})" if note else "")


def cancel_note(call: FunctionCall) -> str:
    """The note `cancelled_result` put on a cancelled call's result, or ""."""
    if call.status == "cancelled" and call.result.endswith(")") and " (" in call.result:
        return call.result.rsplit(" (", 1)[1][:-1]
    return ""
