"""assistant_streaming: call the model and stream its answer — preemptible.

The stream runs in a task of its own that a stop cancels at once (closing the provider's stream). Text is
checkpointed to the database every HARNESS_CHECKPOINT_SECONDS (by the process's StreamCheckpoints, for all
its streams at once) and on every exit, and published to clients as coalesced deltas, so a stop or a crash
keeps what the user already saw.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from ... import events, metrics
from ...models import FunctionCall, Message, MessageRole, MessageStatus, Run, RunOutcome, RunState
from ...providers.base import (
    Finish, ModelRequest, ProviderError, ProviderEvent, TextDelta, ToolCall, Usage, estimate_tokens,
)
from ..context import LeaseLost, StepContext, Tx, model_stream
from ..transcript import build_model_request


@dataclass
class StreamBuffer:
    message_id: int
    parts: list[str] = field(default_factory=list)
    length: int = 0
    published: int = 0  # characters already sent to clients as deltas
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish: str = ""

    @property
    def text(self) -> str:
        # Joined into one part as it is read (each delta, each checkpoint): joining the whole answer's thousands
        # of pieces every time made a long answer's publishing quadratic in Python calls.
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)


def open_turn(tx: Tx) -> str:
    """This state's entry: open the answer message (in the transaction that enters the state, see step.CHAINED,
    or in one of its own when the run is resumed here)."""
    # A message still `streaming` here was left by an executor that died mid-stream: keep its text (the user
    # saw it), close it, and ask the model again.
    for leftover in Message.objects.filter(run=tx.run, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING):
        leftover.status = MessageStatus.ERROR
        leftover.updated_at = tx.now
        leftover.save(update_fields=["status", "updated_at"])
        tx.emit(events.message_completed(message=leftover))
        tx.add_notice("The worker streaming this answer stopped; the model was asked again.")
    tx.answer = tx.add_message(role=MessageRole.ASSISTANT, text="", status=MessageStatus.STREAMING)
    return RunState.ASSISTANT_STREAMING


async def handle(ctx: StepContext, run: Run) -> Run:
    await ctx.refresh_tools(run)  # MCP servers' tools as they are now (a no-op without HARNESS_MCP_CONFIG)
    speculation = ctx.take_speculation(turn=run.turn_count)
    try:
        answer = ctx.opened_answer
        if answer is None:  # resumed in this state, or entered without the chain: open the answer now
            # The model's input is read right after the message is opened, in the same trip to the database.
            run, request = await ctx.advance_then_read(open_turn, lambda run: _model_request(ctx, run, speculation))
            answer = ctx.opened_answer
        else:
            request = speculation.request if speculation else await ctx.db(build_model_request, run=run, tools=ctx.tools)
    except BaseException:
        if speculation is not None:
            await asyncio.shield(speculation.discard())
        raise
    ctx.opened_answer = None
    buffer = StreamBuffer(message_id=answer.id)
    stream = speculation.events() if speculation else model_stream(ctx.provider, request)
    try:
        interrupted, _ = await ctx.preemptible(_consume(ctx, run, stream, buffer))
    except ProviderError as exc:
        metrics.MODEL_ERRORS.labels(kind=str(exc.kind)).inc()
        return await ctx.advance(_failed(buffer, request, str(exc)))
    except asyncio.CancelledError:
        # This process is shutting down: keep every word the user saw for whoever resumes the run.
        await asyncio.shield(ctx.db(_checkpoint_if_ours, ctx, buffer.message_id, buffer.text))
        raise
    finally:
        if speculation is not None:  # (a stream cancelled before its first step never ran its own cleanup)
            await asyncio.shield(speculation.discard())
    if interrupted:
        return await ctx.advance(_stopped(buffer, request))
    return await ctx.advance(_finished(buffer, request))


def _model_request(ctx: StepContext, run: Run, speculation) -> ModelRequest:
    return speculation.request if speculation else build_model_request(run=run, tools=ctx.tools)


async def _consume(ctx: StepContext, run: Run, stream: AsyncIterator[ProviderEvent], buffer: StreamBuffer) -> None:
    last_publish = -math.inf  # the first delta goes out at once: only what follows it is coalesced
    ctx.checkpoints.register(buffer)
    try:
        async with aclosing(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    buffer.append(event.text)
                    now = time.monotonic()
                    if now - last_publish >= coalesce_seconds(ctx.checkpoints.active):
                        if last_publish == -math.inf and run.turn_count == 1:  # the run's first text
                            metrics.FIRST_TOKEN.observe((timezone.now() - run.created_at).total_seconds())
                        await _publish_delta(run, buffer)
                        last_publish = now
                elif isinstance(event, ToolCall):
                    buffer.calls.append(event)
                elif isinstance(event, Usage):
                    buffer.usage = event
                elif isinstance(event, Finish):
                    buffer.finish = event.reason
                    break
    finally:
        ctx.checkpoints.unregister(buffer)
    await _publish_delta(run, buffer)


def coalesce_seconds(streams: int) -> float:
    """How long deltas of one message are gathered into one event: HARNESS_DELTA_COALESCE_SECONDS, longer
    when this process streams so many answers at once that it would otherwise send more than
    HARNESS_MAX_DELTAS_PER_SECOND events (each costs a group send and a socket write per watching client:
    past that rate the event loop falls behind and every client's latency grows without bound)."""
    return max(settings.HARNESS_DELTA_COALESCE_SECONDS, streams / settings.HARNESS_MAX_DELTAS_PER_SECOND)


async def _publish_delta(run: Run, buffer: StreamBuffer) -> None:
    if buffer.published >= buffer.length:
        return
    text = buffer.text
    delta = events.message_delta(
        run_id=run.id, message_id=buffer.message_id, offset=buffer.published, text=text[buffer.published:],
        produced_at=time.time(),
    )
    buffer.published = len(text)
    await events.publish(run.session_id, delta)


def _checkpoint(ctx: StepContext, message_id: int, text: str) -> None:
    saved = Message.objects.filter(pk=message_id, run__executor_id=ctx.executor_id).update(
        text=text, updated_at=timezone.now()
    )
    if not saved:
        raise LeaseLost(ctx.run_id)


def _checkpoint_if_ours(ctx: StepContext, message_id: int, text: str) -> None:
    try:
        _checkpoint(ctx, message_id, text)
    except LeaseLost:
        pass  # someone else drives the run now; their text wins


def _close_message(tx: Tx, buffer: StreamBuffer, request: ModelRequest, status: str) -> Message:
    """Save the answer's final text and status, and account for its tokens: as reported, else estimated
    (the output always, the input unless the provider reported it before the stream ended)."""
    text = buffer.text
    usage = buffer.usage
    if usage is None or not usage.final:
        usage = Usage(
            input_tokens=usage.input_tokens if usage else estimate_tokens("".join(m.text for m in request.messages)),
            output_tokens=estimate_tokens(text),
            estimated=True,
        )
    message = Message.objects.get(pk=buffer.message_id)
    message.text = text
    message.status = status
    message.input_tokens = usage.input_tokens
    message.output_tokens = usage.output_tokens
    message.usage_estimated = usage.estimated
    message.updated_at = tx.now
    message.save()
    run = tx.run
    run.input_tokens += usage.input_tokens
    run.output_tokens += usage.output_tokens
    run.usage_estimated = run.usage_estimated or usage.estimated
    tx.emit(events.message_completed(message=message))
    return message


def _finished(buffer: StreamBuffer, request: ModelRequest):
    def write(tx: Tx) -> str:
        message = _close_message(tx, buffer, request, MessageStatus.COMPLETE)
        seen: set[str] = set()
        for position, call in enumerate(buffer.calls):
            call_id = call.call_id or f"call_{tx.run.turn_count}_{position}"
            if call_id in seen or FunctionCall.objects.filter(run=tx.run, call_id=call_id).exists():
                call_id = f"{call_id}_{tx.run.turn_count}_{position}"  # models do repeat ids
            seen.add(call_id)
            FunctionCall.objects.create(
                run=tx.run, message=message, call_id=call_id, position=position, name=call.name,
                arguments=call.arguments, created_at=tx.now,
            )
        return RunState.ASSISTANT_FINISHED

    return write


def _stopped(buffer: StreamBuffer, request: ModelRequest):
    def write(tx: Tx) -> str:
        _close_message(tx, buffer, request, MessageStatus.STOPPED)
        return RunState.STEERING_CHECK

    return write


def _failed(buffer: StreamBuffer, request: ModelRequest, error: str):
    def write(tx: Tx) -> str:
        _close_message(tx, buffer, request, MessageStatus.ERROR)
        tx.run.error = error
        tx.run.outcome = RunOutcome.FAILED
        tx.add_notice(f"Run failed: {error}")
        return RunState.TEARING_DOWN

    return write
