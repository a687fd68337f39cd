"""The Anthropic provider: the Messages API (`POST /v1/messages`), streamed, with tool use, via the official SDK.

History mapping. The Messages API knows only `user` and `assistant` turns, which must alternate, and has no
`system` role inside `messages`:

- system messages before the first turn become the `system` parameter;
- later system messages (the "previous run was interrupted" notes the transcript puts between runs) become a
  text block of the user turn that follows them, so the model reads each note where it happened in the
  conversation rather than as a timeless instruction;
- an assistant message becomes `text` and `tool_use` blocks; a tool result becomes a `tool_result` block of a
  user turn, with the text as it is (the synthetic "cancelled: …" results of stop repair included, not flagged
  `is_error`: the tool did not fail, the run was stopped);
- consecutive messages of one side merge into one turn (several tool results, a note, the next question),
  and in a user turn the `tool_result` blocks go first, as the API requires.

Streaming. Text deltas are yielded as they arrive. A tool call is yielded when its block closes, its
arguments having arrived as JSON split across many `input_json_delta` events. Usage and the stop reason are
yielded last, once the response has been read to its end (so the connection goes back to the pool) and only
if the stream said `message_stop`: an answer cut short is an error, not a shorter answer.

Preemption. The engine cancels the task iterating `stream()`, or closes the generator. Either way `finally`
closes the HTTP response, which closes its connection, so the server sees the client go at once (a stop
must stop the billing); the close is bounded in time so that it can never hold up the stop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anthropic
import httpx2
from anthropic import AsyncAnthropic, AsyncStream
from anthropic.types import (
    ContentBlockParam,
    MessageParam,
    RawMessageStreamEvent,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)

from .base import (
    ErrorKind,
    Finish,
    ModelMessage,
    ModelRequest,
    ModelTimeouts,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from .http import LoopClient, clip, close_response, http_timeout, retry_after_seconds

logger = logging.getLogger(__name__)


# Anthropic's stop reasons in the engine's vocabulary (OpenAI's finish reasons); others pass through as is.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

# Error types in a mid-stream `error` event (the stream's HTTP status is already 200) → what went wrong.
STREAM_ERROR_KINDS = {
    "overloaded_error": ErrorKind.SERVER_ERROR,
    "api_error": ErrorKind.SERVER_ERROR,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "authentication_error": ErrorKind.AUTHENTICATION,
    "permission_error": ErrorKind.AUTHENTICATION,
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "not_found_error": ErrorKind.BAD_REQUEST,
}

Side = Literal["user", "assistant"]


# --- the request ------------------------------------------------------------------------------------------


def to_anthropic_messages(messages: Iterable[ModelMessage]) -> tuple[str, list[MessageParam]]:
    """The `system` text and the alternating `messages` for a history (see the module docstring)."""
    system: list[str] = []
    turns: list[tuple[Side, list[ContentBlockParam]]] = []
    for message in messages:
        if message.role == "system" and not turns:
            if message.text:
                system.append(message.text)
            continue
        side, blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == side:
            turns[-1][1].extend(blocks)
        else:
            turns.append((side, blocks))
    _trim_final_assistant_text(turns)
    return "\n\n".join(system), [
        {"role": side, "content": _tool_results_first(blocks) if side == "user" else blocks} for side, blocks in turns
    ]


def _trim_final_assistant_text(turns: list[tuple[Side, list[ContentBlockParam]]]) -> None:
    """History that ends on an assistant turn (an answer cut short by a crashed worker, asked again) is taken
    by the API as the start of the answer to continue, and refused if it ends in whitespace — which a text
    cut mid-stream often does."""
    if not turns or turns[-1][0] != "assistant":
        return
    blocks = turns[-1][1]
    last = blocks[-1]
    if last["type"] != "text":
        return
    trimmed = last["text"].rstrip()
    if trimmed:
        blocks[-1] = _text(trimmed)
    else:
        blocks.pop()
        if not blocks:
            turns.pop()


def _blocks(message: ModelMessage) -> tuple[Side, list[ContentBlockParam]]:
    if message.role == "assistant":
        blocks: list[ContentBlockParam] = [_text(message.text)] if message.text else []
        blocks += [_tool_use(call.call_id, call.name, call.arguments) for call in message.tool_calls]
        return "assistant", blocks
    if message.role == "tool" and message.tool_call_id:
        result: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if message.text:  # `content` is optional, and an empty text block would be rejected
            result["content"] = message.text
        return "user", [result]
    if message.role == "tool":
        # A result whose call was lost cannot be a tool_result (it would name no tool_use); keep its text.
        label = f"Result of the {message.name} tool" if message.name else "Tool result"
        return "user", [_text(f"{label}: {message.text}")]
    # "user", and "system" notes after the first turn: plain text in the user's turn.
    return "user", [_text(message.text)] if message.text else []


def _text(text: str) -> TextBlockParam:
    return {"type": "text", "text": text}


def _tool_use(call_id: str, name: str, arguments: dict[str, Any]) -> ToolUseBlockParam:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _tool_results_first(blocks: list[ContentBlockParam]) -> list[ContentBlockParam]:
    """The API wants a user turn's tool_result blocks before any text (a question typed while tools ran, a note)."""
    results = [block for block in blocks if block["type"] == "tool_result"]
    return results + [block for block in blocks if block["type"] != "tool_result"]


def to_anthropic_tools(tools: Iterable[ToolSpec]) -> list[ToolParam]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": tool.parameters or _EMPTY_SCHEMA}
        for tool in tools
    ]


_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def request_params(request: ModelRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for a request (`system` and `tools` only when there are some)."""
    system, messages = to_anthropic_messages(request.messages)
    params: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        params["system"] = system
    tools = to_anthropic_tools(request.tools)
    if tools:
        params["tools"] = tools
    return params


# --- the response stream ----------------------------------------------------------------------------------


def _malformed(detail: str) -> ProviderError:
    return ProviderError(f"the model's answer could not be understood ({detail})", kind=ErrorKind.MALFORMED_STREAM)


T = TypeVar("T")


def _field(obj: object, name: str, kind: type[T], *, where: str) -> T:
    """An event's field, checked: the SDK builds events from JSON without validating them."""
    value = getattr(obj, name, None)
    if value is None or not isinstance(value, kind):
        raise _malformed(f"{where} without a valid {name}")
    return value


def _optional_int(obj: object, name: str) -> int:
    value = getattr(obj, name, None)
    return value if isinstance(value, int) else 0


@dataclass
class _ToolUseBlock:
    call_id: str
    name: str
    initial: dict[str, Any]  # `input` of content_block_start: {} when the input streams as deltas
    parts: list[str] = field(default_factory=list)


@dataclass
class StreamAssembler:
    """The Messages API's raw stream events in, the engine's provider events out. Pure, so it is unit-tested."""

    input_tokens: int | None = None
    output_tokens: int = 0
    stop_reason: str | None = None
    stopped: bool = False  # saw message_stop
    _tool_uses: dict[int, _ToolUseBlock] = field(default_factory=dict)

    def feed(self, event: RawMessageStreamEvent) -> list[ProviderEvent]:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self._message_start(event)
            # Known now, before any text: a stop mid-answer still records the real input count.
            return [Usage(input_tokens=self.input_tokens or 0, output_tokens=self.output_tokens, final=False)]
        elif kind == "content_block_start":
            return self._block_start(event)
        elif kind == "content_block_delta":
            return self._block_delta(event)
        elif kind == "content_block_stop":
            return self._block_stop(event)
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_stop":
            self.stopped = True
        # Anything else (a newer event type) is ignored, as the API's versioning policy asks of clients.
        return []

    def finish(self) -> list[ProviderEvent]:
        """The closing events, once the stream has ended; MALFORMED_STREAM if it ended early."""
        if not self.stopped:
            raise _malformed("the stream ended before message_stop")
        if self._tool_uses:
            raise _malformed("a tool call was never closed")
        closing: list[ProviderEvent] = []
        if self.input_tokens is not None:
            closing.append(Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens))
        reason = self.stop_reason or "stop"
        closing.append(Finish(STOP_REASONS.get(reason, reason)))
        return closing

    def _message_start(self, event: object) -> None:
        message = _field(event, "message", object, where="message_start")
        usage = _field(message, "usage", object, where="message_start")
        # Cached prompt tokens are reported apart from `input_tokens`, but they are input all the same.
        self.input_tokens = (
            _field(usage, "input_tokens", int, where="message_start usage")
            + _optional_int(usage, "cache_creation_input_tokens")
            + _optional_int(usage, "cache_read_input_tokens")
        )
        self.output_tokens = _optional_int(usage, "output_tokens")

    def _block_start(self, event: object) -> list[ProviderEvent]:
        index = _field(event, "index", int, where="content_block_start")
        block = _field(event, "content_block", object, where="content_block_start")
        block_type = getattr(block, "type", None)
        if block_type == "tool_use":
            initial = getattr(block, "input", None)
            self._tool_uses[index] = _ToolUseBlock(
                call_id=_field(block, "id", str, where="tool_use block"),
                name=_field(block, "name", str, where="tool_use block"),
                initial=initial if isinstance(initial, dict) else {},
            )
        elif block_type == "text":
            text = getattr(block, "text", "")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        # Other blocks (thinking, server tools) carry nothing the engine shows or runs.
        return []

    def _block_delta(self, event: object) -> list[ProviderEvent]:
        index = _field(event, "index", int, where="content_block_delta")
        delta = _field(event, "delta", object, where="content_block_delta")
        delta_type = getattr(delta, "type", None)
        if delta_type == "text_delta":
            text = _field(delta, "text", str, where="text_delta")
            return [TextDelta(text)] if text else []
        if delta_type == "input_json_delta":
            tool_use = self._tool_uses.get(index)
            if tool_use is None:
                raise _malformed(f"input_json_delta for block {index}, which is not an open tool_use block")
            tool_use.parts.append(_field(delta, "partial_json", str, where="input_json_delta"))
        return []

    def _block_stop(self, event: object) -> list[ProviderEvent]:
        index = _field(event, "index", int, where="content_block_stop")
        tool_use = self._tool_uses.pop(index, None)
        if tool_use is None:
            return []
        return [ToolCall(call_id=tool_use.call_id, name=tool_use.name, arguments=_arguments(tool_use))]

    def _message_delta(self, event: object) -> None:
        delta = _field(event, "delta", object, where="message_delta")
        reason = getattr(delta, "stop_reason", None)
        if isinstance(reason, str):
            self.stop_reason = reason
        usage = _field(event, "usage", object, where="message_delta")
        # The counts here are cumulative: they replace, not add to, what message_start said.
        self.output_tokens = _field(usage, "output_tokens", int, where="message_delta usage")
        input_tokens = getattr(usage, "input_tokens", None)
        if isinstance(input_tokens, int):
            self.input_tokens = (
                input_tokens + _optional_int(usage, "cache_creation_input_tokens")
                + _optional_int(usage, "cache_read_input_tokens")
            )


def _arguments(tool_use: _ToolUseBlock) -> dict[str, Any]:
    raw = "".join(tool_use.parts)
    if not raw.strip():
        return dict(tool_use.initial)  # a tool without parameters streams no JSON at all
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _malformed(f"the arguments of the {tool_use.name} call are not valid JSON: {exc.msg}") from None
    if not isinstance(arguments, dict):
        raise _malformed(f"the arguments of the {tool_use.name} call are not a JSON object")
    return arguments


# --- errors -----------------------------------------------------------------------------------------------


def translate_error(exc: Exception, *, timeouts: ModelTimeouts, base_url: str | None = None) -> ProviderError:
    """Any failure of a call, as a ProviderError of the right kind with a message fit for the user."""
    api = f"the Anthropic API at {base_url.rstrip('/')}" if base_url else "the Anthropic API"
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        return _timeout_error(exc.__cause__, timeouts=timeouts, api=api)
    if isinstance(exc, anthropic.APIConnectionError):
        # Nothing was received: whether the connect failed or the connection dropped before the response
        # began, asking again is safe (and the engine may).
        cause = exc.__cause__
        what = "could not connect to" if isinstance(cause, httpx2.ConnectError) else "lost the connection to"
        return ProviderError(
            f"{what} {api}: {_describe(cause) or 'connection error'}",
            kind=ErrorKind.CONNECT_FAILED,
        )
    # What follows happens while the body streams, where the SDK lets transport errors through unwrapped.
    if isinstance(exc, httpx2.TimeoutException):
        return _timeout_error(exc, timeouts=timeouts, api=api)
    if isinstance(exc, httpx2.TransportError):
        return _malformed(f"the connection closed before the answer was complete: {_describe(exc)}")
    if isinstance(exc, ValueError):  # json.JSONDecodeError and UnicodeDecodeError included
        return _malformed(f"undecodable data: {_describe(exc)}")
    logger.exception("unexpected failure of an Anthropic call", exc_info=exc)
    return ProviderError(f"the Anthropic call failed unexpectedly: {_describe(exc)}")


def _status_error(exc: anthropic.APIStatusError) -> ProviderError:
    status = exc.status_code
    error_type = exc.type or ""
    # The API's own words when the body is its JSON error; else whatever came (a proxy's page), cut short.
    detail = clip(exc.api_message or (exc.message if not isinstance(exc.body, dict) else "")) or f"HTTP {status}"
    details = {"status": status, "type": error_type, "request_id": exc.request_id}
    if status < 400:
        # An `error` event inside a 200 stream: its type says what happened.
        kind = STREAM_ERROR_KINDS.get(error_type, ErrorKind.PROVIDER_ERROR)
        return ProviderError(
            f"the Anthropic API failed mid-answer ({error_type or 'error'}): {detail}", kind=kind, details=details
        )
    if status in (401, 403):
        return ProviderError(
            f"the Anthropic API rejected the API key ({status}): {detail}", kind=ErrorKind.AUTHENTICATION,
            details=details,
        )
    if status == 429:
        retry_after = retry_after_seconds(exc.response.headers)
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        return ProviderError(
            f"the Anthropic API is rate limiting this key (429{wait}): {detail}", kind=ErrorKind.RATE_LIMITED,
            retry_after=retry_after, details=details,
        )
    if status >= 500:
        what = "is overloaded" if status == 529 or error_type == "overloaded_error" else "had a server error"
        return ProviderError(f"the Anthropic API {what} ({status}): {detail}", kind=ErrorKind.SERVER_ERROR,
                             details=details)
    return ProviderError(
        f"the Anthropic API refused the request ({status} {error_type or 'error'}): {detail}",
        kind=ErrorKind.BAD_REQUEST, details=details,
    )


def _timeout_error(cause: BaseException | None, *, timeouts: ModelTimeouts, api: str) -> ProviderError:
    if isinstance(cause, httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return ProviderError(
            f"could not connect to {api} within {timeouts.connect:g} s",
            kind=ErrorKind.CONNECT_FAILED,
        )
    return ProviderError(f"no data from the model for {timeouts.idle:g} s", kind=ErrorKind.IDLE_TIMEOUT)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return str(exc) or type(exc).__name__


# --- the provider -----------------------------------------------------------------------------------------


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeouts: ModelTimeouts = ModelTimeouts(),
        max_tokens: int = 4096,
    ) -> None:
        if not api_key:
            # Without one the SDK would fall back on credentials found on this machine: never what was meant.
            raise ValueError("the Anthropic provider needs an API key")
        self.model = model
        self.base_url = base_url
        self.timeouts = timeouts
        self.max_tokens = max_tokens
        self._api_key = api_key
        self._client = LoopClient(
            lambda: AsyncAnthropic(
                api_key=api_key, base_url=base_url, timeout=http_timeout(timeouts),
                max_retries=0,  # the engine retries, and only before the first token
            )
        )

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r}, base_url={self.base_url!r})"

    def client(self) -> AsyncAnthropic:
        return self._client.get()

    async def aclose(self) -> None:
        """Release the client's pooled connections (tests, shutdown); the next call opens new ones."""
        await self._client.aclose()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        try:
            params = request_params(request, model=self.model, max_tokens=self.max_tokens)
            response: AsyncStream[RawMessageStreamEvent] = await self.client().messages.create(**params, stream=True)
        except Exception as exc:  # the HTTP status errors, connect failures and timeouts before any event
            raise self._error(exc) from exc
        assembler = StreamAssembler()
        try:
            try:
                async for event in response:
                    for out in assembler.feed(event):
                        yield out
                closing = assembler.finish()
            except ProviderError:
                raise
            except Exception as exc:  # never CancelledError or GeneratorExit: those must pass, and do
                raise self._error(exc) from exc
            for out in closing:
                yield out
        finally:
            await close_response(response, what="model")

    def _error(self, exc: Exception) -> ProviderError:
        return translate_error(exc, timeouts=self.timeouts, base_url=self.base_url)
