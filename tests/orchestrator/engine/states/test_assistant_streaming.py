"""assistant_streaming: one model call, streamed into an assistant message. The finished answer is saved with
its calls and token counts; a stop ends the stream with the answer kept as stopped; a model error fails the
run in plain words; a message a dead executor left streaming is closed, and the model asked again.

The model is the scripted one: the run's first user message is its script (tests/helpers.py `script`).
"""

from __future__ import annotations

import pytest

from orchestrator.engine.states import assistant_streaming
from orchestrator.models import FunctionCall, Message, MessageRole, MessageStatus, Run, RunOutcome, RunState
from tests.factories import make_run
from tests.helpers import db, script

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


def streaming_run(session, *turns: dict, **fields) -> Run:
    """A run at its first turn, about to stream, whose input is a script of `turns`."""
    run = make_run(session, RunState.ASSISTANT_STREAMING, leased_by=EXECUTOR, turn_count=1, **fields)
    Message.objects.create(session=session, run=run, role=MessageRole.USER, text=script(*turns))
    return run


def answers(run: Run) -> list[tuple[str, str]]:
    messages = Message.objects.filter(run=run, role=MessageRole.ASSISTANT).order_by("id")
    return list(messages.values_list("status", "text"))


def notices(run: Run) -> list[str]:
    return list(Message.objects.filter(run=run, role=MessageRole.SYSTEM).values_list("text", flat=True))


async def test_a_finished_answer_is_saved_with_its_calls_and_tokens(session):
    run = await db(streaming_run, session, {"text": "let me look at the clock", "calls": [{"name": "clock"}]})
    after = await assistant_streaming.handle(make_ctx(run), run)
    assert (after.state, after.prev_state) == (RunState.ASSISTANT_FINISHED, RunState.ASSISTANT_STREAMING)
    assert await db(answers, run) == [(MessageStatus.COMPLETE, "let me look at the clock")]
    calls = await db(lambda: list(FunctionCall.objects.filter(run=run).values_list("call_id", "name", "status")))
    assert calls == [("call_t1_0", "clock", "pending")]
    message = await db(Message.objects.get, run=run, role=MessageRole.ASSISTANT)
    assert message.output_tokens == 6 and message.input_tokens > 0  # the scripted model's estimates
    assert (after.input_tokens, after.output_tokens) == (message.input_tokens, message.output_tokens)


async def test_a_stop_ends_the_stream_and_keeps_the_answer_as_stopped(session, user):
    run = await db(streaming_run, session, {"words": 5000, "delay_ms": 5}, stopped_by=user)  # ~25 s unstopped
    after = await assistant_streaming.handle(make_ctx(run), run)
    assert after.state == RunState.STEERING_CHECK
    [(status, text)] = await db(answers, run)
    assert status == MessageStatus.STOPPED and len(text.split()) < 5000
    assert await db(FunctionCall.objects.filter(run=run).count) == 0


async def test_a_model_error_fails_the_run_in_plain_words(session):
    run = await db(streaming_run, session, {"error": "boom"})
    after = await assistant_streaming.handle(make_ctx(run), run)
    assert (after.state, after.outcome, after.error) == (RunState.TEARING_DOWN, RunOutcome.FAILED, "model error: boom")
    assert await db(answers, run) == [(MessageStatus.ERROR, "")]
    assert await db(notices, run) == ["Run failed: model error: boom"]


async def test_an_answer_a_dead_executor_left_streaming_is_closed_and_the_model_asked_again(session):
    run = await db(streaming_run, session, {"text": "a fresh answer"})
    await db(Message.objects.create, session=session, run=run, role=MessageRole.ASSISTANT, text="half an ans",
             status=MessageStatus.STREAMING)
    after = await assistant_streaming.handle(make_ctx(run), run)
    assert after.state == RunState.ASSISTANT_FINISHED
    assert await db(answers, run) == [(MessageStatus.ERROR, "half an ans"), (MessageStatus.COMPLETE, "a fresh answer")]
    assert await db(notices, run) == ["The worker streaming this answer stopped; the model was asked again."]
