"""The OpenAI-compatible provider: the real SDK, over a real socket, against a fake Chat Completions server.

Covers what is assembled from the stream (text, tool calls split over many chunks and interleaved, usage),
what the SDK sends (messages, tools, stream options, the key), every error class, the idle timeout, and
preemption: a cancelled call closes its connection, and the server sees it within 200 ms.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import aclosing
from typing import Any

import httpx2
import openai
import pytest

from orchestrator.models import Message
from orchestrator.providers.base import (
    ErrorKind,
    Finish,
    ModelMessage,
    ModelRequest,
    ModelTimeouts,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallRequest,
    ToolSpec,
    Usage,
)
from orchestrator.providers.openai_chat import OpenAIChatProvider, provider_error
from orchestrator.providers.registry import provider_for
from orchestrator.services.runs import run_stop
from devtools.fakes.openai_wire import ChatChunks, error_response, split, text_answer, tool_call_answer
from devtools.fakes.wire_server import ErrorResponse, Hangup, SSEStream, WireServer
from tests.helpers import db, start, wait_terminal, wait_until

API_KEY = "sk-test-0123456789"
CANCEL_TO_DISCONNECT_LIMIT = 0.2  # seconds, from the issue


@pytest.fixture
def server():
    with WireServer() as wire:
        yield wire


def make_provider(base_url: str, *, idle: float = 5.0, connect: float = 2.0) -> OpenAIChatProvider:
    return OpenAIChatProvider(model="gpt-4.1-mini", api_key=API_KEY, base_url=base_url,
                              timeouts=ModelTimeouts(connect=connect, idle=idle))


@pytest.fixture
async def provider(server):
    model = make_provider(f"{server.base_url}/v1")
    yield model
    await model.aclose()


def ask(text: str = "hello", *, tools: tuple[ToolSpec, ...] = ()) -> ModelRequest:
    return ModelRequest(messages=(ModelMessage(role="user", text=text),), tools=tools)


async def collect(provider: OpenAIChatProvider, request: ModelRequest | None = None) -> list[ProviderEvent]:
    async with aclosing(provider.stream(request or ask())) as stream:
        return [event async for event in stream]


async def collect_until_error(provider: OpenAIChatProvider,
                              request: ModelRequest | None = None) -> tuple[list[ProviderEvent], ProviderError]:
    events: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as caught:
        async with aclosing(provider.stream(request or ask())) as stream:
            async for event in stream:
                events.append(event)
    return events, caught.value


# -- what is assembled from the stream --------------------------------------------------------------------


async def test_text_arrives_piece_by_piece_then_usage_then_finish(server, provider):
    server.push(text_answer("Hello, world! How are you?", pieces=6, prompt_tokens=12, completion_tokens=7))

    events = await collect(provider)

    assert events == [*(TextDelta(p) for p in split("Hello, world! How are you?", 6)),
                      Usage(input_tokens=12, output_tokens=7), Finish("stop")]


async def test_a_body_ended_by_closing_the_connection_is_read_the_same(server, provider):
    # Some OpenAI-compatible servers send no Content-Length and no chunking: the body ends at the close.
    server.push(text_answer("Hi there", pieces=3, framing="close"))

    events = await collect(provider)

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(p) for p in split("Hi there", 3)]
    assert events[-1] == Finish("stop")


async def test_tool_call_arguments_split_across_many_chunks_are_assembled(server, provider):
    arguments = {"path": "notes/2025 plan.md", "content": "line one\nline \"two\"\n", "lines": [1, 2, 3]}
    server.push(tool_call_answer("call_abc123", "write_file", arguments, text="Let me write that.", pieces=40))

    events = await collect(provider)

    assert events == [TextDelta("Let me write that."),
                      ToolCall(call_id="call_abc123", name="write_file", arguments=arguments),
                      Usage(input_tokens=20, output_tokens=8), Finish("tool_calls")]
    sent = server.requests[0].behaviour
    assert sum('"arguments"' in data for _, data in sent.events[:-1]) >= 40  # really split, not sent whole


async def test_two_interleaved_tool_calls_are_told_apart_by_index(server, provider):
    first = json.dumps({"expression": "12 * 7"})
    second = json.dumps({"timezone": "Europe/Paris"})
    chunks = ChatChunks().role().tool_call_start(0, "call_one", "calculator").tool_call_start(1, "call_two", "clock")
    for piece_one, piece_two in zip(split(first, 5), split(second, 5), strict=True):
        chunks.tool_call_arguments(1, piece_two).tool_call_arguments(0, piece_one)
    server.push(chunks.finish("tool_calls").usage(30, 11).sse())

    events = await collect(provider)

    assert events == [ToolCall("call_one", "calculator", {"expression": "12 * 7"}),
                      ToolCall("call_two", "clock", {"timezone": "Europe/Paris"}),
                      Usage(30, 11), Finish("tool_calls")]


async def test_a_tool_call_without_arguments_gets_an_empty_object(server, provider):
    server.push(ChatChunks().role().tool_call_start(0, "call_1", "clock").finish("tool_calls").sse())

    events = await collect(provider)

    assert ToolCall("call_1", "clock", {}) in events


async def test_no_usage_event_when_the_server_sends_none(server, provider):
    server.push(ChatChunks(include_usage=False).role().text("ok").finish("stop").sse())

    assert await collect(provider) == [TextDelta("ok"), Finish("stop")]


async def test_usage_on_a_chunk_with_null_choices_is_read(server, provider):
    # vLLM ends with a usage chunk whose `choices` is null rather than [].
    chunks = ChatChunks().role().text("ok").finish("stop").usage(5, 1)
    chunks.chunks[-1]["choices"] = None
    server.push(chunks.sse())

    assert await collect(provider) == [TextDelta("ok"), Usage(5, 1), Finish("stop")]


async def test_the_finish_reason_is_passed_on(server, provider):
    server.push(ChatChunks().role().text("cut sh").finish("length").usage(5, 2).sse())

    assert (await collect(provider))[-1] == Finish("length")


# -- what the SDK sends -----------------------------------------------------------------------------------


async def test_the_request_carries_history_tool_results_notes_tools_and_the_key(server, provider):
    parameters = {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}
    history = (
        ModelMessage(role="user", text="sleep a while"),
        ModelMessage(role="assistant", text="Sleeping.",
                     tool_calls=(ToolCallRequest("call_9", "sleep", {"seconds": 30}),)),
        ModelMessage(role="tool", text="cancelled: run stopped by alice", tool_call_id="call_9", name="sleep"),
        ModelMessage(role="system", text="Note: the previous run was interrupted: the user stopped it."),
        ModelMessage(role="assistant", text="", tool_calls=(ToolCallRequest("call_10", "clock", {}),)),
        ModelMessage(role="tool", text="12:00", tool_call_id="call_10", name="clock"),
        ModelMessage(role="user", text="try again"),
    )
    tools = (ToolSpec("sleep", "Sleep for a number of seconds.", parameters),)
    server.push(text_answer("ok"))

    await collect(provider, ModelRequest(messages=history, tools=tools))

    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["model"] == "gpt-4.1-mini"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [
        {"role": "user", "content": "sleep a while"},
        {"role": "assistant", "content": "Sleeping.", "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "sleep", "arguments": '{"seconds": 30}'}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "cancelled: run stopped by alice"},
        {"role": "system", "content": "Note: the previous run was interrupted: the user stopped it."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_10", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_10", "content": "12:00"},
        {"role": "user", "content": "try again"},
    ]
    assert sent.body["tools"] == [{"type": "function", "function": {
        "name": "sleep", "description": "Sleep for a number of seconds.", "parameters": parameters}}]


async def test_no_tools_key_when_there_are_no_tools(server, provider):
    server.push(text_answer("ok"))

    await collect(provider)

    assert "tools" not in server.requests[0].body


# -- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind", "words"), [
    (400, ErrorKind.BAD_REQUEST, "rejected the request (400): Invalid parameter"),
    (401, ErrorKind.AUTHENTICATION, "refused the API key (401): Incorrect API key provided"),
    (403, ErrorKind.AUTHENTICATION, "refused the API key (403): You are not allowed"),
    (404, ErrorKind.BAD_REQUEST, "rejected the request (404): The model `gpt-nope` does not exist"),
    (500, ErrorKind.SERVER_ERROR, "failed (500): The server had an error"),
    (503, ErrorKind.SERVER_ERROR, "failed (503): The engine is currently overloaded"),
])
async def test_each_error_status_becomes_its_kind_with_the_servers_message(server, provider, status, kind, words):
    server.push(error_response(status))

    events, error = await collect_until_error(provider)

    assert (events, error.kind) == ([], kind)
    assert words in error.message
    assert len(server.requests) == 1  # the SDK did not retry on its own


async def test_rate_limit_carries_the_retry_after_the_server_asked_for(server, provider):
    server.push(error_response(429, retry_after="7"))

    _, error = await collect_until_error(provider)

    assert error.kind == ErrorKind.RATE_LIMITED and error.retryable
    assert error.retry_after == 7.0
    assert "rate limited" in error.message and "Please try again in 2s." in error.message
    assert len(server.requests) == 1


@pytest.mark.parametrize(("cause", "kind", "message"), [
    (httpx2.ConnectTimeout("timed out"), ErrorKind.CONNECT_FAILED,
     "could not connect to the model server example.test:8000 within 2 s"),
    (httpx2.ReadTimeout("timed out"), ErrorKind.IDLE_TIMEOUT, "no data from the model for 5 s"),
])
def test_timeouts_are_told_apart_by_phase(cause, kind, message):
    timeout = openai.APITimeoutError(request=httpx2.Request("POST", "http://example.test:8000/v1/chat/completions"))
    timeout.__cause__ = cause

    error = provider_error(timeout, streaming=False, timeouts=ModelTimeouts(connect=2, idle=5),
                           server="example.test:8000")

    assert (error.kind, error.message) == (kind, message)


def test_an_unexpected_exception_is_still_a_provider_error():
    error = provider_error(RuntimeError("boom"), streaming=True, timeouts=ModelTimeouts(), server="x")

    assert error.kind == ErrorKind.PROVIDER_ERROR
    assert error.message == "the model call failed unexpectedly (RuntimeError)"


async def test_an_error_body_that_is_not_json_still_gives_a_plain_message(server, provider):
    server.push(ErrorResponse(502, "<html><body>Bad gateway</body></html>"))

    _, error = await collect_until_error(provider)

    assert error.kind == ErrorKind.SERVER_ERROR
    assert error.message == "the model server failed (502): <html><body>Bad gateway</body></html>"


@pytest.mark.parametrize("bad", [
    (None, '{"id":"chatcmpl-x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":'),
    b"\xff\xfe\x00 not utf-8 \n\n",
], ids=["broken-json", "garbage-bytes"])
async def test_undecodable_data_mid_stream_is_a_malformed_stream(server, provider, bad):
    good = ChatChunks().role().text("partial ").events(done=False)
    server.push(SSEStream(events=[*good, bad]))

    events, error = await collect_until_error(provider)

    assert events == [TextDelta("partial ")]  # what came before is kept
    assert error.kind == ErrorKind.MALFORMED_STREAM
    assert error.message == "the model server sent data that is not valid JSON"


async def test_a_stream_that_ends_without_a_finish_reason_is_malformed(server, provider):
    server.push(ChatChunks().role().text("half an ans").sse())  # [DONE] but no finish_reason

    events, error = await collect_until_error(provider)

    assert events == [TextDelta("half an ans")]
    assert error.kind == ErrorKind.MALFORMED_STREAM and "ended before it was complete" in error.message


async def test_a_connection_dropped_mid_stream_is_malformed_not_a_connect_failure(server, provider):
    server.push(ChatChunks().role().text("half").sse(done=False, end="hangup"))

    events, error = await collect_until_error(provider)

    assert events == [TextDelta("half")]
    assert error.kind == ErrorKind.MALFORMED_STREAM
    assert error.message == "the connection to the model server closed before the answer was complete"


async def test_tool_arguments_that_are_not_json_are_malformed(server, provider):
    server.push(tool_call_answer("call_1", "calculator", '{"expression": "1 +', pieces=3))

    _, error = await collect_until_error(provider)

    assert error.kind == ErrorKind.MALFORMED_STREAM
    assert error.message == "the model sent arguments for tool 'calculator' that are not a JSON object"


async def test_an_error_event_inside_the_stream_is_a_server_error(server, provider):
    error_event = (None, json.dumps({"error": {"message": "The model is overloaded.", "type": "server_error"}}))
    server.push(SSEStream(events=[*ChatChunks().role().text("so").events(done=False), error_event]))

    events, error = await collect_until_error(provider)

    assert events == [TextDelta("so")]
    assert error.kind == ErrorKind.SERVER_ERROR
    assert error.message == "the model server reported an error: The model is overloaded."


async def test_a_server_that_hangs_up_without_answering_is_a_connect_failure(server, provider):
    server.push(Hangup())

    _, error = await collect_until_error(provider)

    assert error.kind == ErrorKind.CONNECT_FAILED and error.retryable
    assert error.message.startswith(f"could not connect to the model server 127.0.0.1:{server.port}")


async def test_connection_refused_is_a_connect_failure():
    with socket.socket() as probe:  # a port that was free a moment ago, with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = make_provider(f"http://127.0.0.1:{port}/v1")
    try:
        events, error = await collect_until_error(model)
    finally:
        await model.aclose()

    assert events == []
    assert error.kind == ErrorKind.CONNECT_FAILED and error.retryable
    assert error.message.startswith(f"could not connect to the model server 127.0.0.1:{port}")


async def test_idle_timeout_fires_on_a_stalled_stream_and_drops_the_connection(server):
    model = make_provider(f"{server.base_url}/v1", idle=0.3)
    server.push(ChatChunks().role().text("Hel").sse(done=False, end="stall"))
    started = time.monotonic()
    try:
        events, error = await collect_until_error(model)
    finally:
        await model.aclose()

    assert events == [TextDelta("Hel")]
    assert error.kind == ErrorKind.IDLE_TIMEOUT and not error.retryable
    assert error.message == "no data from the model for 0.3 s"
    assert 0.3 <= time.monotonic() - started < 3
    assert await server.await_disconnect(timeout=2) is not None  # the stalled response was let go


async def test_idle_timeout_also_bounds_the_wait_for_the_response_headers(server):
    model = make_provider(f"{server.base_url}/v1", idle=0.3)
    server.push(text_answer("late", headers_delay=30))
    try:
        _, error = await collect_until_error(model)
    finally:
        await model.aclose()

    assert error.kind == ErrorKind.IDLE_TIMEOUT
    assert error.message == "no data from the model for 0.3 s"


# -- preemption -------------------------------------------------------------------------------------------


async def _cancel_and_time_the_disconnect(server: WireServer, task: asyncio.Task[Any]) -> float:
    """Cancel `task`, check CancelledError comes out of it, and return cancel → server-seen EOF in seconds."""
    cancelled_at = time.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnected_at = await server.await_disconnect(timeout=2)
    assert disconnected_at is not None, "the server never saw the client leave"
    assert server.requests[-1].outcome == "disconnected"
    return disconnected_at - cancelled_at


async def _stream_into(provider: OpenAIChatProvider, received: list[ProviderEvent], first: asyncio.Event) -> None:
    async with aclosing(provider.stream(ask())) as stream:
        async for event in stream:
            received.append(event)
            first.set()


@pytest.mark.parametrize("delay", [0.05, 0.0], ids=["between-slow-events", "stalled"])
async def test_cancelling_mid_stream_closes_the_connection_at_once(server, provider, delay):
    words = [f"word{i} " for i in range(200)]
    if delay:
        server.push(ChatChunks().role().text(*words).finish("stop").sse(delay=delay))
    else:
        server.push(ChatChunks().role().text(*words[:3]).sse(done=False, end="stall"))
    received: list[ProviderEvent] = []
    first = asyncio.Event()
    task = asyncio.create_task(_stream_into(provider, received, first))
    await asyncio.wait_for(first.wait(), timeout=5)

    elapsed = await _cancel_and_time_the_disconnect(server, task)

    print(f"cancel -> server-observed disconnect: {elapsed * 1000:.2f} ms")
    assert elapsed < CANCEL_TO_DISCONNECT_LIMIT
    assert received and len(received) < len(words)
    assert not any(isinstance(e, Finish) for e in received)


async def test_cancelling_while_waiting_for_the_response_headers_closes_the_connection(server, provider):
    server.push(text_answer("late", headers_delay=30))
    task = asyncio.create_task(collect(provider))
    assert await server.await_for(lambda: len(server.requests) == 1, timeout=5)

    elapsed = await _cancel_and_time_the_disconnect(server, task)

    print(f"cancel (before headers) -> server-observed disconnect: {elapsed * 1000:.2f} ms")
    assert elapsed < CANCEL_TO_DISCONNECT_LIMIT


async def test_a_consumer_that_stops_reading_early_closes_the_connection(server, provider):
    server.push(ChatChunks().role().text("one ", "two ").sse(done=False, end="stall"))

    async with aclosing(provider.stream(ask())) as stream:
        async for event in stream:
            assert event == TextDelta("one ")
            break

    assert await server.await_disconnect(timeout=1) is not None


async def test_the_connection_is_reused_after_a_complete_answer(server, provider):
    server.push(text_answer("first"), text_answer("second"))

    assert TextDelta("first") in await collect(provider)
    assert TextDelta("second") in await collect(provider)

    assert [r.outcome for r in (server.wait_finished(0), server.wait_finished(1))] == ["completed", "completed"]
    assert server.requests[1].disconnected_at is None


# -- the wire server itself -------------------------------------------------------------------------------


def _raw_request(port: int, body: bytes = b'{"ping": true}') -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return client


def test_wire_server_sees_a_disconnect_while_idle_between_events(server):
    server.push(SSEStream(events=[(None, "one"), (None, "two")], delay=30))  # 30 s until the next write
    client = _raw_request(server.port)
    assert server.wait_events_sent(1, timeout=5) is not None
    assert client.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")

    closed_at = time.time()
    client.close()
    disconnected_at = server.wait_disconnect(timeout=2)

    assert disconnected_at is not None and disconnected_at - closed_at < 0.1
    recorded = server.requests[0]
    assert (recorded.outcome, recorded.events_sent, recorded.body) == ("disconnected", 1, {"ping": True})


def test_wire_server_streams_sse_as_chunks_and_reports_completion(server):
    server.push(SSEStream(events=[("message_start", '{"a": 1}'), (None, "two\nlines")]))
    client = _raw_request(server.port)
    try:
        assert server.wait_finished(0, timeout=5).outcome == "completed"
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            received += client.recv(4096)
    finally:
        client.close()

    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-type: text/event-stream; charset=utf-8" in head
    assert b"transfer-encoding: chunked" in head
    assert b"event: message_start\ndata: {\"a\": 1}\n\n" in body
    assert b"data: two\ndata: lines\n\n" in body
    assert server.wait_disconnect(timeout=0.2) is None  # a completed response is not a disconnect


def test_wire_server_answers_with_the_default_when_nothing_is_queued(server):
    client = _raw_request(server.port)
    try:
        assert server.wait_finished(0, timeout=5).outcome == "completed"
        assert client.recv(4096).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    finally:
        client.close()


def test_wire_server_stop_ends_a_stalled_stream_and_its_thread():
    wire = WireServer().start()
    wire.push(SSEStream(events=[(None, "x")], end="stall"))
    client = _raw_request(wire.port)
    try:
        assert wire.wait_events_sent(1, timeout=5) is not None
        wire.stop()
        assert wire.requests[0].outcome == "stalled"
        client.settimeout(2)
        while client.recv(4096):  # the server's side of the connection is gone: EOF (or a reset)
            pass
    except ConnectionResetError:
        pass
    finally:
        client.close()
    assert not any(thread.name == "wire-server" for thread in threading.enumerate())


# -- whole runs: the real worker, HARNESS_MODEL pointing at the fake server -------------------------------


@pytest.fixture
async def openai_model(server, settings):
    """HARNESS_MODEL is an OpenAI-compatible model served by the fake server; yields the model id."""
    model_id = f"openai:gpt-4.1-mini@{server.base_url}/v1"
    settings.HARNESS_MODEL = model_id
    settings.OPENAI_API_KEY = API_KEY
    settings.HARNESS_MODEL_RETRY_BASE_SECONDS = 0.01
    yield model_id
    await provider_for(model_id).aclose()  # the registry keeps the instance; its pooled sockets go now


def _transcript(session_id) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.text) for m in Message.objects.filter(session_id=session_id).order_by("id")]


def _assistant_message(run_id):
    return Message.objects.filter(run_id=run_id, role="assistant").order_by("-id").first()


@pytest.mark.django_db(transaction=True)
async def test_a_run_with_a_tool_call_goes_through_the_fake_server(server, openai_model, worker, session, user):
    server.push(
        tool_call_answer("call_calc_1", "calculator", {"expression": "12 * 7"}, text="Let me work that out.",
                         pieces=8),
        text_answer("The answer is 84.", pieces=4, prompt_tokens=40, completion_tokens=6),
    )

    run = await wait_terminal((await start(session, user, "what is 12 * 7?")).id)

    assert (run.state, run.outcome, run.turn_count, run.model) == ("completed", "completed", 2, openai_model)
    assert await db(_transcript, session.id) == [
        ("user", "complete", "what is 12 * 7?"),
        ("assistant", "complete", "Let me work that out."),
        ("tool", "complete", "84"),
        ("assistant", "complete", "The answer is 84."),
    ]
    assert (run.input_tokens, run.output_tokens, run.usage_estimated) == (60, 14, False)
    first, second = server.requests
    assert "calculator" in [tool["function"]["name"] for tool in first.body["tools"]]
    assert second.body["messages"][1:] == [
        {"role": "assistant", "content": "Let me work that out.", "tool_calls": [{
            "id": "call_calc_1", "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "12 * 7"}'}}]},
        {"role": "tool", "tool_call_id": "call_calc_1", "content": "84"},
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_stop_mid_stream_disconnects_at_once_and_keeps_the_partial_text(server, openai_model, worker,
                                                                               session, user):
    words = [f"word{i} " for i in range(3000)]  # 60 s of answer if nobody stops it
    server.push(ChatChunks().role().text(*words).finish("stop").usage(50, 3000).sse(delay=0.02))
    run = await start(session, user, "tell me a long story")
    await wait_until(lambda: (m := _assistant_message(run.id)) is not None and m.text, what="streamed text saved")

    stopped_at = time.time()
    result = await db(run_stop, session_id=session.id, requested_by=user)
    disconnected_at = await server.await_disconnect(timeout=5)
    run = await wait_terminal(run.id, timeout=5)

    assert result.accepted and disconnected_at is not None
    print(f"stop -> server-observed disconnect (whole run): {(disconnected_at - stopped_at) * 1000:.2f} ms")
    assert disconnected_at - stopped_at < CANCEL_TO_DISCONNECT_LIMIT
    assert run.outcome == "stopped"
    message = await db(_assistant_message, run.id)
    assert message.status == "stopped"
    assert 0 < len(message.text.split()) < len(words)
    assert message.usage_estimated  # the usage chunk never came: an estimate, marked as one


@pytest.mark.django_db(transaction=True)
async def test_an_authentication_error_fails_the_run_with_a_plain_message(server, openai_model, worker, session,
                                                                          user):
    server.push(error_response(401))

    run = await wait_terminal((await start(session, user, "hello")).id)

    assert run.outcome == "failed"
    assert run.error.startswith("the model server refused the API key (401): Incorrect API key provided")
    assert ("system", "complete", f"Run failed: {run.error}") in await db(_transcript, session.id)
    assert len(server.requests) == 1  # not retryable


@pytest.mark.django_db(transaction=True)
async def test_server_errors_before_the_first_token_are_retried(server, openai_model, worker, session, user):
    server.push(error_response(500), error_response(503), text_answer("Third time lucky."))

    run = await wait_terminal((await start(session, user, "hello")).id)

    assert run.outcome == "completed"
    assert len(server.requests) == 3
