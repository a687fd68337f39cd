"""build_model_request: what the model is sent for a run, built from the session's rows."""

from __future__ import annotations

import pytest
from django.utils import timezone

from orchestrator.engine.transcript import build_model_request
from orchestrator.models import (
    CallStatus,
    FunctionCall,
    Message,
    MessageRole,
    MessageStatus,
    Run,
    RunOutcome,
    RunState,
)
from orchestrator.providers.base import ModelMessage, ToolCallRequest, ToolSpec
from orchestrator.tools.registry import get_registry
from tests.factories import make_run

pytestmark = pytest.mark.django_db

INTERRUPTED = "Note: the previous run was interrupted: the user stopped it before it finished."


def finished_run(session, outcome: str, **fields) -> Run:
    """An earlier run, in the terminal state matching its outcome."""
    return make_run(session, outcome, turn_count=1, **fields)


def current_run(session, *, turn_count: int = 1) -> Run:
    return make_run(session, RunState.ASSISTANT_STREAMING, turn_count=turn_count)


def message(session, run, role: str, text: str, **fields) -> Message:
    return Message.objects.create(session=session, run=run, role=role, text=text, **fields)


def exchange(session, run, question: str, answer: str, *, answer_status=MessageStatus.COMPLETE) -> None:
    message(session, run, MessageRole.USER, question)
    message(session, run, MessageRole.ASSISTANT, answer, status=answer_status)


def roles_and_texts(request) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in request.messages]


def build(run):
    return build_model_request(run=run, tools=get_registry())


def test_messages_of_the_session_in_order(session):
    earlier = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, earlier, "first question", "first answer")
    run = current_run(session)
    message(session, run, MessageRole.USER, "second question")

    request = build(run)
    assert roles_and_texts(request) == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert all(isinstance(m, ModelMessage) for m in request.messages)


def test_other_sessions_are_not_sent(session, user):
    from orchestrator.services.sessions import session_create

    other = session_create(owner=user, title="other")
    other_run = finished_run(other, RunOutcome.STOPPED, stop_reason="user")
    exchange(other, other_run, "elsewhere", "not here")
    run = current_run(session)
    message(session, run, MessageRole.USER, "mine")
    assert roles_and_texts(build(run)) == [("user", "mine")]


def test_tools_are_the_registry(session):
    run = current_run(session)
    message(session, run, MessageRole.USER, "hi")
    request = build(run)
    registry = get_registry()
    assert request.tools == tuple(ToolSpec(name=t.name, description=t.description, parameters=t.parameters)
                                  for t in registry)
    assert [t.name for t in request.tools] == registry.names()


def test_system_messages_are_not_sent(session):
    earlier = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, earlier, "question", "answer")
    message(session, earlier, MessageRole.SYSTEM, "The run reached its turn limit.")
    run = current_run(session)
    message(session, run, MessageRole.USER, "next")
    message(session, run, MessageRole.SYSTEM, "a notice for people")

    request = build(run)
    assert roles_and_texts(request) == [("user", "question"), ("assistant", "answer"), ("user", "next")]
    assert all(m.role != "system" for m in request.messages)


def test_tool_calls_and_results(session):
    run = current_run(session, turn_count=2)
    message(session, run, MessageRole.USER, "what is 12 * 7 and the time?")
    assistant = message(session, run, MessageRole.ASSISTANT, "Let me work that out.")
    now = timezone.now()
    # The engine creates a message's calls with one timestamp; they are ordered by position. Create them out
    # of order to check that.
    clock_call = FunctionCall.objects.create(
        run=run, message=assistant, call_id="call_t1_1", position=1, name="clock", arguments={},
        status=CallStatus.SUCCEEDED, created_at=now,
    )
    calc_call = FunctionCall.objects.create(
        run=run, message=assistant, call_id="call_t1_0", position=0, name="calculator",
        arguments={"expression": "12 * 7"}, status=CallStatus.SUCCEEDED, created_at=now,
    )
    message(session, run, MessageRole.TOOL, "84", function_call=calc_call)
    message(session, run, MessageRole.TOOL, "2024-01-01 12:00:00 UTC", function_call=clock_call)

    request = build(run)
    user_msg, assistant_msg, calc_result, clock_result = request.messages
    assert user_msg == ModelMessage(role="user", text="what is 12 * 7 and the time?")
    assert assistant_msg == ModelMessage(
        role="assistant",
        text="Let me work that out.",
        tool_calls=(
            ToolCallRequest(call_id="call_t1_0", name="calculator", arguments={"expression": "12 * 7"}),
            ToolCallRequest(call_id="call_t1_1", name="clock", arguments={}),
        ),
    )
    assert calc_result == ModelMessage(role="tool", text="84", tool_call_id="call_t1_0", name="calculator")
    assert clock_result == ModelMessage(role="tool", text="2024-01-01 12:00:00 UTC", tool_call_id="call_t1_1",
                                        name="clock")


def test_an_assistant_message_with_only_tool_calls_is_sent(session):
    run = current_run(session, turn_count=2)
    message(session, run, MessageRole.USER, "time?")
    assistant = message(session, run, MessageRole.ASSISTANT, "")
    call = FunctionCall.objects.create(run=run, message=assistant, call_id="c1", name="clock", arguments={},
                                       status=CallStatus.SUCCEEDED)
    message(session, run, MessageRole.TOOL, "noon", function_call=call)

    request = build(run)
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[1].text == ""
    assert request.messages[1].tool_calls == (ToolCallRequest(call_id="c1", name="clock", arguments={}),)


def test_a_cancelled_call_keeps_its_synthetic_result(session):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    message(session, earlier, MessageRole.USER, "sleep a while")
    assistant = message(session, earlier, MessageRole.ASSISTANT, "Sleeping.")
    call = FunctionCall.objects.create(run=earlier, message=assistant, call_id="c1", name="sleep",
                                       arguments={"seconds": 60}, status=CallStatus.CANCELLED)
    message(session, earlier, MessageRole.TOOL, "cancelled: the user stopped the run", function_call=call)
    run = current_run(session)
    message(session, run, MessageRole.USER, "never mind")

    request = build(run)
    assert [m.role for m in request.messages] == ["user", "assistant", "tool", "system", "user"]
    assert request.messages[1].tool_calls == (ToolCallRequest(call_id="c1", name="sleep", arguments={"seconds": 60}),)
    assert request.messages[2].tool_call_id == "c1" and request.messages[2].name == "sleep"


def test_a_streaming_assistant_message_is_skipped(session):
    run = current_run(session, turn_count=2)
    message(session, run, MessageRole.USER, "hello")
    message(session, run, MessageRole.ASSISTANT, "a complete answer")
    message(session, run, MessageRole.ASSISTANT, "a partial ans", status=MessageStatus.STREAMING)
    assert roles_and_texts(build(run)) == [("user", "hello"), ("assistant", "a complete answer")]


def test_partial_answers_kept_by_a_stop_are_sent_and_empty_ones_are_not(session):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    message(session, earlier, MessageRole.USER, "tell me a story")
    message(session, earlier, MessageRole.ASSISTANT, "Once upon", status=MessageStatus.STOPPED)
    message(session, earlier, MessageRole.ASSISTANT, "", status=MessageStatus.STOPPED)
    run = current_run(session)
    message(session, run, MessageRole.USER, "go on")
    assert [m for m in roles_and_texts(build(run)) if m[0] != "system"] == [
        ("user", "tell me a story"), ("assistant", "Once upon"), ("user", "go on"),
    ]


def test_a_note_follows_a_run_stopped_by_the_user(session):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    exchange(session, earlier, "first", "partial", answer_status=MessageStatus.STOPPED)
    run = current_run(session)
    message(session, run, MessageRole.USER, "second")

    request = build(run)
    roles = [m.role for m in request.messages]
    assert roles == ["user", "assistant", "system", "user"]
    note = request.messages[2]
    assert note.text.startswith(INTERRUPTED)
    assert "interrupted" in note.text
    assert request.messages[3].text == "second"


def test_the_note_goes_after_the_stopped_runs_last_message_not_after_its_system_notices(session):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    exchange(session, earlier, "first", "partial", answer_status=MessageStatus.STOPPED)
    message(session, earlier, MessageRole.SYSTEM, "Stopped by alice.")
    run = current_run(session)
    message(session, run, MessageRole.USER, "second")

    request = build(run)
    assert [m.role for m in request.messages] == ["user", "assistant", "system", "user"]
    assert request.messages[2].text.startswith(INTERRUPTED)


def test_one_note_per_interrupted_run_each_before_the_next_run(session):
    first = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    exchange(session, first, "one", "partial one", answer_status=MessageStatus.STOPPED)
    second = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, second, "two", "answer two")
    third = finished_run(session, RunOutcome.FAILED, error="rate limited")
    message(session, third, MessageRole.USER, "three")
    run = current_run(session)
    message(session, run, MessageRole.USER, "four")

    request = build(run)
    assert roles_and_texts(request)[:2] == [("user", "one"), ("assistant", "partial one")]
    assert request.messages[2].role == "system" and request.messages[2].text.startswith(INTERRUPTED)
    assert roles_and_texts(request)[3:] == [
        ("user", "two"),
        ("assistant", "answer two"),
        ("user", "three"),
        ("system", "Note: the previous run was interrupted by an error: rate limited"),
        ("user", "four"),
    ]


def test_no_note_after_a_completed_run(session):
    earlier = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, earlier, "first", "answer")
    run = current_run(session)
    message(session, run, MessageRole.USER, "second")
    assert [m.role for m in build(run).messages] == ["user", "assistant", "user"]


def test_no_note_after_a_max_turns_stop(session):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason="max_turns")
    exchange(session, earlier, "first", "answer")
    run = current_run(session)
    message(session, run, MessageRole.USER, "second")
    assert [m.role for m in build(run).messages] == ["user", "assistant", "user"]


@pytest.mark.parametrize("stop_reason", ["admin", "shutdown", ""])
def test_a_note_after_a_stop_for_another_reason(session, stop_reason):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason=stop_reason)
    exchange(session, earlier, "first", "partial", answer_status=MessageStatus.STOPPED)
    run = current_run(session)
    message(session, run, MessageRole.USER, "second")
    assert [m.role for m in build(run).messages] == ["user", "assistant", "system", "user"]


def test_the_note_after_a_failed_run_includes_the_error(session):
    earlier = finished_run(session, RunOutcome.FAILED, error="model error: boom")
    message(session, earlier, MessageRole.USER, "first")
    run = current_run(session)
    message(session, run, MessageRole.USER, "second")

    request = build(run)
    assert [m.role for m in request.messages] == ["user", "system", "user"]
    assert request.messages[1].text == "Note: the previous run was interrupted by an error: model error: boom"


def test_the_current_run_gets_no_note_even_if_it_is_being_stopped(session):
    run = make_run(session, RunState.TEARING_DOWN, outcome=RunOutcome.STOPPED, stop_reason="user", turn_count=1)
    message(session, run, MessageRole.USER, "hello")
    assert [m.role for m in build(run).messages] == ["user"]


def test_run_input_is_the_first_user_message_of_the_run(session):
    earlier = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, earlier, "an earlier run's input", "answer")
    run = current_run(session, turn_count=3)
    message(session, run, MessageRole.USER, "script:{\"turns\": []}")
    message(session, run, MessageRole.ASSISTANT, "ok")
    message(session, run, MessageRole.USER, "a steering message, later in the run")

    request = build(run)
    assert request.run_input == 'script:{"turns": []}'
    assert request.turn == 3


@pytest.mark.parametrize("turn_count", [1, 2, 5])
def test_turn_is_the_runs_turn_count(session, turn_count):
    run = current_run(session, turn_count=turn_count)
    message(session, run, MessageRole.USER, "hi")
    assert build(run).turn == turn_count


def test_run_input_is_empty_when_the_run_has_no_user_message(session):
    earlier = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, earlier, "earlier", "answer")
    run = current_run(session)
    assert build(run).run_input == ""


def test_superseded_messages_and_their_runs_note_are_not_sent(session):
    kept = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, kept, "first question", "first answer")
    replaced = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    exchange(session, replaced, "second question", "half an ans", answer_status=MessageStatus.STOPPED)
    run = current_run(session)
    message(session, run, MessageRole.USER, "second question, edited")
    assert ("user", "second question") in roles_and_texts(build(run))  # sent while it is current

    Message.objects.filter(run=replaced).update(superseded_at=timezone.now(), superseded_by=run)

    assert roles_and_texts(build(run)) == [
        ("user", "first question"), ("assistant", "first answer"), ("user", "second question, edited"),
    ]  # neither the replaced turn nor the note that its run was stopped


# --- notes (an upload): shown to people AND sent to the model -------------------------------------------------


def note(session, text: str) -> Message:
    """A note outside any run, as `services.uploads.file_upload` writes it."""
    return message(session, None, MessageRole.NOTE, text)


def test_a_note_is_sent_as_a_user_message_in_brackets(session):
    earlier = finished_run(session, RunOutcome.COMPLETED)
    exchange(session, earlier, "question", "answer")
    note(session, "uploaded report.csv, 12 KB")
    run = current_run(session)
    message(session, run, MessageRole.USER, "summarise it")
    assert roles_and_texts(build(run)) == [
        ("user", "question"), ("assistant", "answer"), ("user", "[uploaded report.csv, 12 KB]"),
        ("user", "summarise it"),
    ]


def test_a_note_written_while_tools_ran_follows_their_results(session):
    """Nothing may come between an assistant's tool calls and their results (OpenAI refuses it): a note
    uploaded mid-turn reaches the model after the results, at its next turn."""
    run = current_run(session, turn_count=2)
    message(session, run, MessageRole.USER, "what is 12 * 7?")
    assistant = message(session, run, MessageRole.ASSISTANT, "")
    call = FunctionCall.objects.create(run=run, message=assistant, call_id="call_t1_0", name="calculator",
                                       arguments={"expression": "12 * 7"}, status=CallStatus.SUCCEEDED)
    note(session, "uploaded data.csv, 3 bytes")
    message(session, run, MessageRole.TOOL, "84", function_call=call)
    request = build(run)
    assert [(m.role, m.text, m.tool_call_id) for m in request.messages] == [
        ("user", "what is 12 * 7?", ""), ("assistant", "", ""), ("tool", "84", "call_t1_0"),
        ("user", "[uploaded data.csv, 3 bytes]", ""),
    ]


def test_a_note_during_a_stopped_run_does_not_repeat_its_interruption_note(session):
    earlier = finished_run(session, RunOutcome.STOPPED, stop_reason="user")
    message(session, earlier, MessageRole.USER, "question")
    note(session, "uploaded a.txt, 1 byte")
    message(session, earlier, MessageRole.ASSISTANT, "partial", status=MessageStatus.STOPPED)
    run = current_run(session)
    message(session, run, MessageRole.USER, "go on")
    sent = roles_and_texts(build(run))
    assert [(role, text[:len(INTERRUPTED)]) for role, text in sent] == [
        ("user", "question"), ("user", "[uploaded a.txt, 1 byte]"), ("assistant", "partial"), ("system", INTERRUPTED),
        ("user", "go on"),
    ]
