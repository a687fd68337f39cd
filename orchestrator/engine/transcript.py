"""What the model is sent: the session's history as provider-neutral messages.

- Partial answers kept by a stop are sent as they are (the model sees what the user saw).
- Every tool call has a result, because stop repair and crash repair write synthetic ones.
- After a run that was stopped or failed, a short note tells the model it was interrupted.
- System messages in the transcript are notices for people (errors, limits) and are not sent.
- Notes (an upload: "uploaded report.csv, 12 KB") are sent as user messages in brackets. A note written while
  a turn's tool calls were running waits until their results are sent: nothing may come between an
  assistant's tool calls and their results.
- Messages superseded by an edit or a regeneration are not sent (nor their runs' interruption notes).
"""

from __future__ import annotations

from ..models import FunctionCall, Message, MessageRole, MessageStatus, Run, RunOutcome
from ..providers.base import ModelMessage, ModelRequest, ToolCallRequest, ToolSpec
from ..tools.registry import ToolRegistry


def interruption_note(run: Run) -> str | None:
    if run.outcome == RunOutcome.STOPPED and run.stop_reason != "max_turns":
        who = "an administrator" if run.stop_reason == "admin" else "the user"
        return (
            f"Note: the previous run was interrupted: {who} stopped it before it finished. "
            "Tool calls marked cancelled did not complete."
        )
    if run.outcome == RunOutcome.FAILED:
        return f"Note: the previous run was interrupted by an error: {run.error}"
    return None


def build_model_request(*, run: Run, tools: ToolRegistry) -> ModelRequest:
    messages = list(
        Message.objects.current().filter(session_id=run.session_id)
        .exclude(role=MessageRole.SYSTEM)
        .select_related("function_call")
        .order_by("id")
    )
    # The calls and the earlier runs are read only when the transcript has something they belong to: a run's
    # first turn in a new session (the path to the first token) is then one query.
    calls_by_message: dict[int, list[FunctionCall]] = {}
    if any(message.role == MessageRole.ASSISTANT for message in messages):
        for call in FunctionCall.objects.filter(run__session_id=run.session_id).order_by("created_at", "position"):
            calls_by_message.setdefault(call.message_id, []).append(call)
    earlier_ids = {message.run_id for message in messages} - {run.pk, None}
    earlier_runs = {r.id: r for r in Run.objects.filter(pk__in=earlier_ids)} if earlier_ids else {}

    # The next message that belongs to a run (notes belong to none), to find where each run's messages end.
    next_in_a_run: list[Message | None] = [None] * len(messages)
    for index in range(len(messages) - 2, -1, -1):
        following = messages[index + 1]
        next_in_a_run[index] = following if following.role != MessageRole.NOTE else next_in_a_run[index + 1]
    history: list[ModelMessage] = []
    held_notes: list[ModelMessage] = []
    run_input = ""
    for index, message in enumerate(messages):
        if message.run_id == run.id and message.role == MessageRole.USER and not run_input:
            run_input = message.text
        converted = _convert(message, calls_by_message.get(message.id, []))
        if converted is not None:
            if message.role == MessageRole.NOTE and history and (history[-1].role == "tool"
                                                                 or history[-1].tool_calls):
                held_notes.append(converted)  # inside a tool block: after its results
                continue
            if converted.role != "tool":
                history.extend(held_notes)
                held_notes.clear()
            history.append(converted)
        following = next_in_a_run[index]
        finished_run = earlier_runs.get(message.run_id)
        if finished_run and (following is None or following.run_id != message.run_id):
            note = interruption_note(finished_run)
            if note:
                history.append(ModelMessage(role="system", text=note))
    history.extend(held_notes)
    return ModelRequest(
        messages=tuple(history),
        tools=tuple(ToolSpec(name=t.name, description=t.description, parameters=t.parameters) for t in tools),
        run_input=run_input,
        turn=run.turn_count,
    )


def _convert(message: Message, calls: list[FunctionCall]) -> ModelMessage | None:
    if message.role == MessageRole.TOOL:
        call = message.function_call
        return ModelMessage(role="tool", text=message.text, tool_call_id=call.call_id if call else "",
                            name=call.name if call else "")
    if message.role == MessageRole.ASSISTANT:
        if message.status == MessageStatus.STREAMING or (not message.text and not calls):
            return None
        return ModelMessage(
            role="assistant", text=message.text,
            tool_calls=tuple(ToolCallRequest(call_id=c.call_id, name=c.name, arguments=c.arguments) for c in calls),
        )
    if message.role == MessageRole.NOTE:
        return ModelMessage(role="user", text=f"[{message.text}]")
    return ModelMessage(role="user", text=message.text)
