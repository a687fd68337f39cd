"""The Anthropic provider: the real SDK, over a real socket, against a fake server speaking the Messages API's
streaming wire format (devtools/fakes/anthropic_wire.py); then whole runs through the engine.

Nothing here sleeps to synchronise: the server reports what it saw (requests, events written, the moment
the client disconnected) and the tests wait on that, with deadlines.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import TypeAdapter

from anthropic.types import RawMessageStreamEvent
from orchestrator.engine.transcript import interruption_note
from orchestrator.models import Message, Run
from orchestrator.providers.anthropic_messages import (
    AnthropicProvider,
    StreamAssembler,
    to_anthropic_messages,
    to_anthropic_tools,
    translate_error,
)
from orchestrator.providers.base import (
    ErrorKind,
    estimate_tokens,
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
from devtools.fakes.anthropic_wire import MessageEvents, error_response, text_answer
from devtools.fakes.wire_server import ErrorResponse, Hangup, SSEStream, WireServer
from tests.helpers import db, start, wait_terminal
from devtools.servers import free_port

API_KEY = "sk-ant-api03-test-key"
MODEL = "claude-sonnet-4-6"  # not one the SDK warns about as deprecated
HELLO = ModelRequest(messages=(ModelMessage(role="user", text="Hello"),), tools=())
CALCULATOR = ToolSpec(
    name="calculator", description="Evaluate arithmetic.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)
# The longest a stop may take to reach the server (the bound; typically well under 5 ms).
DISCONNECT_BOUND = 0.2


@pytest.fixture
def server():
    with WireServer() as server:
        yield server


def provider_for(server: WireServer, *, idle: float = 10.0, max_tokens: int = 4096) -> AnthropicProvider:
    return AnthropicProvider(model=MODEL, api_key=API_KEY, base_url=server.base_url,
                             timeouts=ModelTimeouts(connect=2.0, idle=idle), max_tokens=max_tokens)


async def collect(provider: AnthropicProvider, request: ModelRequest = HELLO) -> list[ProviderEvent]:
    return [event async for event in provider.stream(request)]


async def failure(
    provider: AnthropicProvider, request: ModelRequest = HELLO,
) -> tuple[list[ProviderEvent], ProviderError]:
    """The events yielded before the call failed, and its error (the test fails if it does not fail)."""
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as raised:
        async for event in provider.stream(request):
            seen.append(event)
    return seen, raised.value


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


# --- streaming answers --------------------------------------------------------------------------------------


async def test_text_streams_as_deltas_then_usage_and_finish(server):
    events = MessageEvents(input_tokens=31, cache_read_input_tokens=9).text("Hel", "lo, ", "world")
    server.push(events.end("end_turn", 7).sse(delay=0.001))
    # Cached prompt tokens count as input; pings (one follows the first block start) are skipped. The input
    # count goes out at once (a stop mid-answer keeps it), the final counts at the end.
    assert await collect(provider_for(server)) == [
        Usage(input_tokens=40, output_tokens=1, final=False),
        TextDelta("Hel"), TextDelta("lo, "), TextDelta("world"), Usage(input_tokens=40, output_tokens=7), Finish("stop"),
    ]


async def test_two_tool_uses_are_assembled_from_many_input_json_deltas(server):
    first = {"expression": "(1234 + 5678) * 91 / 7", "precision": 4, "note": "naïve ✓ \"quoted\""}
    second = {"path": "notes/today.md", "content": "line one\nline two\n" * 5}
    events = (MessageEvents().text("Working on it.")
              .tool_use("toolu_01A09q90qw90lq917835lq9", "calculator", first, pieces=25)
              .tool_use("toolu_01B2xyz", "write_file", second, pieces=40)
              .end("tool_use", 120))
    assert sum(1 for name, _ in events.items if name == "content_block_delta") > 60  # really split up
    server.push(events.sse())
    result = await collect(provider_for(server))
    assert result == [
        Usage(input_tokens=25, output_tokens=1, final=False),
        TextDelta("Working on it."),
        ToolCall(call_id="toolu_01A09q90qw90lq917835lq9", name="calculator", arguments=first),
        ToolCall(call_id="toolu_01B2xyz", name="write_file", arguments=second),
        Usage(input_tokens=25, output_tokens=120),
        Finish("tool_calls"),
    ]


async def test_each_tool_call_is_yielded_when_its_block_closes(server):
    # The second block stalls: the first call must already be out, not held back until the message ends.
    events = MessageEvents().tool_use("toolu_1", "clock", {}, pieces=1)
    index = events.block_start({"type": "tool_use", "id": "toolu_2", "name": "calculator", "input": {}})
    events.input_json_delta(index, "", '{"expr')
    server.push(events.sse(end="stall"))
    stream = provider_for(server).stream(HELLO)
    try:
        assert isinstance(await asyncio.wait_for(anext(stream), 5), Usage)  # the input count, at message_start
        assert await asyncio.wait_for(anext(stream), 5) == ToolCall(call_id="toolu_1", name="clock", arguments={})
    finally:
        await stream.aclose()


async def test_a_tool_without_input_gets_empty_arguments_and_max_tokens_means_length(server):
    events = MessageEvents().tool_use("toolu_1", "clock", "", pieces=1).end("max_tokens", 4096)
    server.push(events.sse())
    result = await collect(provider_for(server))
    assert result[1] == ToolCall(call_id="toolu_1", name="clock", arguments={})
    assert result[-1] == Finish("length")


# --- what is sent -------------------------------------------------------------------------------------------


async def test_the_request_carries_system_history_tool_results_and_tools(server):
    note = "Note: the previous run was interrupted: the user stopped it before it finished."
    request = ModelRequest(
        messages=(
            ModelMessage(role="system", text="You are terse."),
            ModelMessage(role="user", text="Add 2 and 3, and read a.txt"),
            ModelMessage(role="assistant", text="Sure.", tool_calls=(
                ToolCallRequest(call_id="toolu_add", name="calculator", arguments={"expression": "2 + 3"}),
                ToolCallRequest(call_id="toolu_read", name="read_file", arguments={"path": "a.txt"}),
            )),
            ModelMessage(role="tool", text="5", tool_call_id="toolu_add", name="calculator"),
            ModelMessage(role="tool", text="cancelled: run stopped by user", tool_call_id="toolu_read",
                         name="read_file"),
            ModelMessage(role="system", text=note),
            ModelMessage(role="user", text="Just the sum, then."),
        ),
        tools=(CALCULATOR,),
    )
    server.push(text_answer("5."))
    await collect(provider_for(server, max_tokens=321), request)

    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.body == {
        "model": MODEL,
        "max_tokens": 321,
        "stream": True,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Add 2 and 3, and read a.txt"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "toolu_add", "name": "calculator", "input": {"expression": "2 + 3"}},
                {"type": "tool_use", "id": "toolu_read", "name": "read_file", "input": {"path": "a.txt"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_add", "content": "5"},
                {"type": "tool_result", "tool_use_id": "toolu_read", "content": "cancelled: run stopped by user"},
                {"type": "text", "text": note},
                {"type": "text", "text": "Just the sum, then."},
            ]},
        ],
        "tools": [{"name": "calculator", "description": "Evaluate arithmetic.", "input_schema": CALCULATOR.parameters}],
    }
    # SDK 2.12 sends the key as a bearer token (older SDKs used x-api-key); either way it is ours.
    assert sent.headers.get("authorization") == f"Bearer {API_KEY}" or sent.headers.get("x-api-key") == API_KEY
    assert sent.headers["anthropic-version"]
    assert sent.headers["x-stainless-retry-count"] == "0"


async def test_no_system_or_tools_keys_when_there_are_none(server):
    server.push(text_answer("Hi."))
    await collect(provider_for(server))
    body = server.requests[0].body
    assert "system" not in body and "tools" not in body
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind", "message"), [
    (401, ErrorKind.AUTHENTICATION, "the Anthropic API rejected the API key (401): invalid x-api-key"),
    (403, ErrorKind.AUTHENTICATION, "the Anthropic API rejected the API key (403): Your API key does not have "
                                    "permission to use the specified resource."),
    (500, ErrorKind.SERVER_ERROR, "the Anthropic API had a server error (500): Internal server error"),
    (529, ErrorKind.SERVER_ERROR, "the Anthropic API is overloaded (529): Overloaded"),
    (404, ErrorKind.BAD_REQUEST, "the Anthropic API refused the request (404 not_found_error): model: claude-nope"),
    (400, ErrorKind.BAD_REQUEST, "the Anthropic API refused the request (400 invalid_request_error): "
                                 "messages.1.content.0: unexpected `tool_use_id`"),
])
async def test_http_errors_map_to_kinds_with_the_servers_message(server, status, kind, message):
    server.push(error_response(status))
    events, error = await failure(provider_for(server))
    assert events == []
    assert error.kind == kind
    assert str(error).startswith(message)
    assert error.details["request_id"] == "req_011CWfakeError0001"


async def test_a_proxy_error_page_is_a_server_error_with_its_text_cut_short(server):
    page = "<html><body><h1>502 Bad Gateway</h1>\n" + "upstream went away " * 200 + "</body></html>"
    server.push(ErrorResponse(502, page))
    _, error = await failure(provider_for(server))
    assert error.kind == ErrorKind.SERVER_ERROR
    assert str(error).startswith("the Anthropic API had a server error (502): <html><body><h1>502 Bad Gateway</h1> up")
    assert len(str(error)) < 600


async def test_rate_limit_carries_retry_after(server):
    server.push(error_response(429, retry_after="7"))
    _, error = await failure(provider_for(server))
    assert (error.kind, error.retry_after, error.retryable) == (ErrorKind.RATE_LIMITED, 7.0, True)
    assert str(error).startswith("the Anthropic API is rate limiting this key (429, retry after 7 s): This request")


async def test_an_error_event_mid_stream_is_a_server_error_after_the_text_so_far(server):
    events = MessageEvents()
    index = events.block_start({"type": "text", "text": ""})
    server.push(events.text_delta(index, "Partial ", "answer").error("overloaded_error", "Overloaded").sse())
    seen, error = await failure(provider_for(server))
    assert text_of(seen) == "Partial answer"
    assert error.kind == ErrorKind.SERVER_ERROR
    assert str(error) == "the Anthropic API failed mid-answer (overloaded_error): Overloaded"


@pytest.mark.parametrize(("stream", "detail"), [
    # Undecodable data in an event.
    (SSEStream(events=[*MessageEvents().start().events(), b"event: content_block_delta\ndata: {\"type\": \"con\n\n"]),
     "undecodable data"),
    # A complete HTTP response whose event stream never said message_stop.
    (MessageEvents().text("cut").sse(), "the stream ended before message_stop"),
    # The server hangs up mid-body.
    (MessageEvents().text("cut").sse(end="hangup"), "the connection closed before the answer was complete"),
    # A tool's input that is not JSON once assembled.
    (MessageEvents().tool_use("toolu_1", "calculator", '{"expression": "1 +', pieces=3).end("tool_use").sse(),
     "the arguments of the calculator call are not valid JSON"),
    # A tool's input that is JSON but not an object.
    (MessageEvents().tool_use("toolu_1", "calculator", "[1, 2]", pieces=2).end("tool_use").sse(),
     "the arguments of the calculator call are not a JSON object"),
    # A delta with no delta.
    (SSEStream(events=[*MessageEvents().start().events(),
                       ("content_block_delta", '{"type":"content_block_delta","index":0}')]),
     "content_block_delta without a valid delta"),
])
async def test_malformed_streams(server, stream, detail):
    server.push(stream)
    _, error = await failure(provider_for(server))
    assert error.kind == ErrorKind.MALFORMED_STREAM
    assert str(error).startswith(f"the model's answer could not be understood ({detail}")


async def test_connect_refused_is_a_connect_failure():
    provider = AnthropicProvider(model=MODEL, api_key=API_KEY, base_url=f"http://127.0.0.1:{free_port()}",
                                 timeouts=ModelTimeouts(connect=2.0, idle=2.0))
    _, error = await failure(provider)
    assert error.kind == ErrorKind.CONNECT_FAILED and error.retryable
    assert str(error).startswith("could not connect to the Anthropic API at http://127.0.0.1:")


async def test_a_hangup_before_any_response_is_a_retryable_connect_failure(server):
    server.push(Hangup())
    _, error = await failure(provider_for(server))
    assert error.kind == ErrorKind.CONNECT_FAILED and error.retryable
    assert str(error).startswith(f"lost the connection to the Anthropic API at {server.base_url}")


async def test_a_stalled_stream_fails_on_the_idle_timeout(server):
    events = MessageEvents()
    index = events.block_start({"type": "text", "text": ""})
    server.push(events.text_delta(index, "So far").sse(end="stall"))
    seen, error = await asyncio.wait_for(failure(provider_for(server, idle=0.3)), 5)
    assert text_of(seen) == "So far"
    assert (error.kind, str(error)) == (ErrorKind.IDLE_TIMEOUT, "no data from the model for 0.3 s")
    # The connection was given up, not left open.
    assert await server.await_disconnect(timeout=2) is not None


async def test_a_server_that_never_answers_fails_on_the_idle_timeout(server):
    server.push(text_answer("late", headers_delay=30))
    _, error = await asyncio.wait_for(failure(provider_for(server, idle=0.3)), 5)
    assert (error.kind, str(error)) == (ErrorKind.IDLE_TIMEOUT, "no data from the model for 0.3 s")


# --- preemption ---------------------------------------------------------------------------------------------


def slow_answer(words: int = 1000, delay: float = 0.02) -> SSEStream:
    return MessageEvents().text(*["word "] * words).end("end_turn", words).sse(delay=delay)


async def test_cancelling_the_task_mid_stream_closes_the_connection_at_once(server):
    server.push(slow_answer())
    got_some = asyncio.Event()
    seen: list[ProviderEvent] = []

    async def consume() -> None:
        async for event in provider_for(server).stream(HELLO):
            seen.append(event)
            if len(seen) == 3:
                got_some.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(got_some.wait(), 5)
    cancelled_at = time.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnected_at = await server.await_disconnect(timeout=5)
    assert disconnected_at is not None, "the server never saw the client go"
    assert disconnected_at - cancelled_at < DISCONNECT_BOUND
    request = server.requests[0]
    assert request.outcome == "disconnected" and request.events_sent < 100


def keep_sdk_streams(provider: AnthropicProvider) -> list[Any]:
    """Hold on to every SDK stream the provider opens, as a tracing hook or a debugger might: then only an
    explicit close, not the garbage collector finalising a dropped stream, can end the response."""
    messages = provider.client().messages
    create = messages.create
    kept: list[Any] = []

    async def keeping(**kwargs: Any) -> Any:
        kept.append(await create(**kwargs))
        return kept[-1]

    messages.create = keeping  # type: ignore[method-assign]
    return kept


async def test_closing_the_generator_between_events_closes_the_connection_at_once(server):
    # The engine's other exit: the consumer is busy elsewhere (the generator is parked at a `yield`) when the
    # stop lands, and `aclosing` closes the generator. The provider's `finally` must close the response.
    server.push(slow_answer())
    provider = provider_for(server)
    kept = keep_sdk_streams(provider)
    stream = provider.stream(HELLO)
    for _ in range(3):
        await asyncio.wait_for(anext(stream), 5)
    closed_at = time.time()
    await stream.aclose()
    disconnected_at = await server.await_disconnect(timeout=2)
    assert disconnected_at is not None, "the server never saw the client go"
    assert disconnected_at - closed_at < DISCONNECT_BOUND
    assert kept[0].response.is_closed


async def test_cancelling_while_waiting_for_the_response_closes_the_connection(server):
    server.push(text_answer("late", headers_delay=30))
    task = asyncio.ensure_future(collect(provider_for(server)))
    await server.await_for(lambda: server.requests)
    cancelled_at = time.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnected_at = await server.await_disconnect(timeout=5)
    assert disconnected_at is not None and disconnected_at - cancelled_at < DISCONNECT_BOUND


# --- translation (pure) -------------------------------------------------------------------------------------


def test_leading_system_text_becomes_the_system_parameter():
    system, messages = to_anthropic_messages([
        ModelMessage(role="system", text="Rule one."), ModelMessage(role="system", text="Rule two."),
        ModelMessage(role="user", text="Hi"),
    ])
    assert system == "Rule one.\n\nRule two."
    assert messages == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_a_note_after_an_answer_opens_the_next_user_turn():
    system, messages = to_anthropic_messages([
        ModelMessage(role="user", text="Tell me a story"),
        ModelMessage(role="assistant", text="Once upon a"),
        ModelMessage(role="system", text="Note: interrupted."),
        ModelMessage(role="user", text="Shorter, please"),
    ])
    assert system == ""
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"] == [{"type": "text", "text": "Note: interrupted."},
                                      {"type": "text", "text": "Shorter, please"}]


def test_a_trailing_note_is_a_user_turn_of_its_own():
    _, messages = to_anthropic_messages([
        ModelMessage(role="user", text="Hi"), ModelMessage(role="assistant", text="Hel"),
        ModelMessage(role="system", text="Note: interrupted."),
    ])
    assert messages[-1] == {"role": "user", "content": [{"type": "text", "text": "Note: interrupted."}]}


def test_a_final_partial_answer_loses_its_trailing_whitespace():
    # The API continues a final assistant turn, and rejects one that ends in whitespace.
    _, messages = to_anthropic_messages([
        ModelMessage(role="user", text="Count"), ModelMessage(role="assistant", text="one two "),
    ])
    assert messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": "one two"}]}
    _, messages = to_anthropic_messages([
        ModelMessage(role="user", text="Count"), ModelMessage(role="assistant", text=" \n"),
    ])
    assert messages == [{"role": "user", "content": [{"type": "text", "text": "Count"}]}]


def test_tool_results_go_first_in_their_user_turn():
    # A message typed while the tool ran was stored before its result; the API wants results first.
    _, messages = to_anthropic_messages([
        ModelMessage(role="user", text="Time?"),
        ModelMessage(role="assistant", text="", tool_calls=(ToolCallRequest("toolu_1", "clock", {}),)),
        ModelMessage(role="user", text="and the date"),
        ModelMessage(role="tool", text="", tool_call_id="toolu_1", name="clock"),
    ])
    assert messages[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}}]}
    assert messages[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1"},  # empty result: no (empty, rejected) content
        {"type": "text", "text": "and the date"},
    ]}


def test_consecutive_assistant_messages_merge_and_a_result_without_a_call_stays_readable():
    _, messages = to_anthropic_messages([
        ModelMessage(role="user", text="Go"),
        ModelMessage(role="assistant", text="First try, cut"),
        ModelMessage(role="assistant", text="Second try"),
        ModelMessage(role="tool", text="42", name="calculator"),
    ])
    assert messages[1]["content"] == [{"type": "text", "text": "First try, cut"},
                                      {"type": "text", "text": "Second try"}]
    assert messages[2] == {"role": "user", "content": [{"type": "text", "text": "Result of the calculator tool: 42"}]}


def test_tools_translate_to_input_schema():
    bare = ToolSpec(name="clock", description="The time.", parameters={})
    assert to_anthropic_tools([CALCULATOR, bare]) == [
        {"name": "calculator", "description": "Evaluate arithmetic.", "input_schema": CALCULATOR.parameters},
        {"name": "clock", "description": "The time.", "input_schema": {"type": "object", "properties": {}}},
    ]


_EVENT = TypeAdapter(RawMessageStreamEvent)


def feed_all(assembler: StreamAssembler, items: list[tuple[str, Any]]) -> list[ProviderEvent]:
    out: list[ProviderEvent] = []
    for _name, data in items:
        if data["type"] not in ("ping", "error"):  # the SDK consumes those itself
            out += assembler.feed(_EVENT.validate_python(data))
    return out


def test_assembler_takes_cumulative_usage_and_maps_stop_reasons():
    for reason, finish in [("end_turn", "stop"), ("tool_use", "tool_calls"), ("max_tokens", "length"),
                           ("refusal", "content_filter"), ("pause_turn", "pause_turn")]:
        assembler = StreamAssembler()
        items = MessageEvents(input_tokens=10).text("a").delta(reason, 3).delta(reason, 8).stop().items
        assert feed_all(assembler, items) == [Usage(input_tokens=10, output_tokens=1, final=False), TextDelta("a")]
        assert assembler.finish() == [Usage(input_tokens=10, output_tokens=8), Finish(finish)]


def test_assembler_rejects_a_stream_cut_short_or_a_delta_for_no_tool():
    assembler = StreamAssembler()
    feed_all(assembler, MessageEvents().text("a").delta("end_turn", 2).items)
    with pytest.raises(ProviderError, match="ended before message_stop") as raised:
        assembler.finish()
    assert raised.value.kind == ErrorKind.MALFORMED_STREAM

    stray = MessageEvents().text("a")
    stray.input_json_delta(0, '{"a": 1}')
    with pytest.raises(ProviderError, match="not an open tool_use block"):
        feed_all(StreamAssembler(), stray.items)


def test_an_unexpected_exception_becomes_a_plain_provider_error():
    error = translate_error(RuntimeError("kaboom"), timeouts=ModelTimeouts(), base_url="https://api.anthropic.com")
    assert (error.kind, str(error)) == (ErrorKind.PROVIDER_ERROR, "the Anthropic call failed unexpectedly: kaboom")


def test_one_provider_serves_successive_event_loops(server):
    # The registry caches providers for the life of the process; each loop must get a client of its own.
    provider = provider_for(server)
    for answer in ("first loop", "second loop"):
        server.push(text_answer(answer))
        assert text_of(asyncio.run(collect(provider))) == answer


def test_a_provider_needs_an_api_key():
    with pytest.raises(ValueError, match="needs an API key"):
        AnthropicProvider(model=MODEL, api_key="")


# --- whole runs through the engine --------------------------------------------------------------------------


@pytest.fixture
def anthropic_model(settings, server):
    """Runs use the Anthropic provider pointed at the fake server."""
    settings.HARNESS_MODEL = f"anthropic:{MODEL}@{server.base_url}"
    settings.ANTHROPIC_API_KEY = API_KEY
    return settings.HARNESS_MODEL


def transcript(session_id) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.text) for m in Message.objects.filter(session_id=session_id).order_by("id")]


@pytest.mark.django_db(transaction=True)
async def test_a_run_with_a_tool_call_over_two_turns(anthropic_model, server, worker, session, user):
    server.push(
        MessageEvents(input_tokens=120).text("Let me ", "compute that.")
        .tool_use("toolu_01Calc", "calculator", {"expression": "12 * 7"}, pieces=8).end("tool_use", 31).sse(),
        text_answer("12 times 7 is 84.", pieces=5, input_tokens=180, output_tokens=9),
    )
    run = await start(session, user, "what is 12 * 7?")
    run = await wait_terminal(run.id)
    assert (run.state, run.outcome, run.turn_count, run.model) == ("completed", "completed", 2, anthropic_model)
    assert await db(transcript, session.id) == [
        ("user", "complete", "what is 12 * 7?"),
        ("assistant", "complete", "Let me compute that."),
        ("tool", "complete", "84"),
        ("assistant", "complete", "12 times 7 is 84."),
    ]
    # The reported usage, not an estimate.
    assert (run.input_tokens, run.output_tokens, run.usage_estimated) == (300, 40, False)

    second = server.requests[1].body
    assert second["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "what is 12 * 7?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me compute that."},
            {"type": "tool_use", "id": "toolu_01Calc", "name": "calculator", "input": {"expression": "12 * 7"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Calc", "content": "84"}]},
    ]
    assert "calculator" in [tool["name"] for tool in second["tools"]]


@pytest.mark.django_db(transaction=True)
async def test_stop_mid_stream_disconnects_at_once_and_the_next_run_is_told(anthropic_model, server, worker,
                                                                            session, user):
    from orchestrator.services.runs import run_stop

    server.push(MessageEvents(input_tokens=1234).text(*["word "] * 2000).end("end_turn", 2000).sse(delay=0.01))
    run = await start(session, user, "tell me a long story")
    await server.await_for(lambda: server.requests and server.requests[0].events_sent >= 20, timeout=10)
    stopped_at = time.time()
    await db(run_stop, session_id=session.id, requested_by=user)
    disconnected_at = await server.await_disconnect(index=0, timeout=5)
    assert disconnected_at is not None, "the server never saw the client go"
    assert disconnected_at - stopped_at < DISCONNECT_BOUND

    run = await wait_terminal(run.id)
    assert (run.state, run.outcome) == ("stopped", "stopped")
    [(status, partial)] = [(status, text) for role, status, text in await db(transcript, session.id)
                           if role == "assistant"]
    assert status == "stopped" and partial.startswith("word word")
    # The input count came at message_start and is kept; the output, never reported, is estimated.
    message = await db(lambda: Message.objects.get(run_id=run.id, role="assistant"))
    assert (message.input_tokens, message.usage_estimated) == (1234, True)
    assert message.output_tokens == estimate_tokens(partial)
    assert (run.input_tokens, run.usage_estimated) == (1234, True)

    # The next run's request carries the partial answer and, in the new user turn, the interruption note.
    server.push(text_answer("Sorry, here is the end."))
    second = await start(session, user, "go on")
    await wait_terminal(second.id)
    note = await db(lambda: interruption_note(Run.objects.get(pk=run.id)))
    assert server.requests[1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "tell me a long story"}]},
        {"role": "assistant", "content": [{"type": "text", "text": partial}]},
        {"role": "user", "content": [{"type": "text", "text": note}, {"type": "text", "text": "go on"}]},
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("answer", "error", "kept"), [
    (error_response(401), "the Anthropic API rejected the API key (401): invalid x-api-key", ""),
    (MessageEvents().text("Half an ans").error("overloaded_error", "Overloaded").sse(),
     "the Anthropic API failed mid-answer (overloaded_error): Overloaded", "Half an ans"),
])
async def test_errors_fail_the_run_with_a_plain_message_and_keep_the_text(anthropic_model, server, worker, session,
                                                                          user, answer, error, kept):
    server.push(answer)
    run = await start(session, user, "hello")
    run = await wait_terminal(run.id)
    assert (run.state, run.outcome, run.error) == ("failed", "failed", error)
    messages = await db(transcript, session.id)
    assert ("assistant", "error", kept) in messages
    assert any(role == "system" and error in text for role, _, text in messages)
    assert len(server.requests) == 1  # not retried: a bad key stays bad, and text was already shown
