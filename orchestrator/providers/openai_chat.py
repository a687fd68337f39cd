"""OpenAI Chat Completions (and every OpenAI-compatible server: Ollama, vLLM, llama.cpp, LM Studio …).

One model call is one streamed ``POST {base_url}/chat/completions`` made with the official SDK's
``AsyncOpenAI`` client: text is yielded as it arrives, tool calls are assembled from their pieces and yielded
when the answer is complete, followed by the usage the server reported (if any) and the finish reason.

- No retries here (``max_retries=0``): the engine retries retryable errors, and only before the first event.
- No total timeout: ``connect`` bounds opening the connection and ``read`` (the idle timeout) bounds the wait
  for every next piece of the response, so an answer may stream for as long as it keeps streaming.
- Preemption: a stop cancels the task iterating this generator. The cancellation reaches the socket read
  inside the SDK, whose HTTP layer closes the connection on the way out; ``finally`` closes the response
  again for the other ways out (the consumer stopped iterating, an error), so the server sees the client
  leave at once and stops generating (and billing).
- Every failure leaves as a ProviderError with a plain message; only CancelledError passes through as is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

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

class OpenAIChatProvider:
    name = "openai"

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None,
                 timeouts: ModelTimeouts = ModelTimeouts()) -> None:
        self.model = model
        self.base_url = base_url
        self.timeouts = timeouts
        self._api_key = api_key
        self._client = LoopClient(self._new_client)

    def __repr__(self) -> str:
        return f"OpenAIChatProvider(model={self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Release the client's pooled connections (tests, shutdown); the next call opens new ones."""
        await self._client.aclose()

    def _new_client(self) -> AsyncOpenAI:
        try:
            return AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0,
                               timeout=http_timeout(self.timeouts))
        except openai.OpenAIError as exc:  # e.g. no API key at all
            raise ProviderError(f"the OpenAI client could not be set up: {exc}",
                                kind=ErrorKind.AUTHENTICATION) from None

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        client = self._client.get()
        try:
            response = await client.chat.completions.create(**self._request_body(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a ProviderError; CancelledError passes
            raise self._error(exc, streaming=False) from None
        answer = _Answer()
        try:
            async with aclosing(self._chunks(response)) as chunks:
                async for chunk in chunks:
                    for event in answer.feed(chunk):
                        yield event
            for event in answer.finish():
                yield event
        finally:
            await close_response(response, what="model")

    def _request_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(message) for message in request.messages],
            "stream": True,
            # Without it the stream carries no usage; servers that do not know the option ignore it.
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            # An empty `tools` list is rejected by the API, so the key is left out when there are none.
            body["tools"] = [to_openai_tool(tool) for tool in request.tools]
        return body

    async def _chunks(self, response: AsyncStream[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
        """The SDK's chunks, with its errors translated; the `await` is where a stop's cancellation lands."""
        while True:
            try:
                chunk = await anext(response)
            except StopAsyncIteration:
                return
            except Exception as exc:  # noqa: BLE001 - translated; CancelledError is not an Exception
                raise self._error(exc, streaming=True) from None
            yield chunk

    def _error(self, exc: Exception, *, streaming: bool) -> ProviderError:
        error = provider_error(exc, streaming=streaming, timeouts=self.timeouts, server=self._server_name())
        if error.kind == ErrorKind.PROVIDER_ERROR:
            logger.warning("unexpected error from the OpenAI client (%s)", self, exc_info=exc)
        return error

    def _server_name(self) -> str:
        return urlsplit(self.base_url).netloc if self.base_url else "api.openai.com"


# -- the request ------------------------------------------------------------------------------------------


def to_openai_message(message: ModelMessage) -> dict[str, Any]:
    if message.role == "tool":
        # Synthetic results ("cancelled: run stopped by …") are ordinary results: every call gets one.
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            # The API wants null, not "", for a turn that only called tools.
            "content": message.text or None,
            "tool_calls": [
                {"id": call.call_id, "type": "function",
                 "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
                for call in message.tool_calls
            ],
        }
    # system messages are the engine's notes ("the previous run was interrupted …"), sent where they occur.
    return {"role": message.role, "content": message.text}


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {"type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}}


# -- the answer -------------------------------------------------------------------------------------------


@dataclass
class _PendingCall:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    """Assembles one streamed answer: text goes out at once, the rest once the stream has ended."""

    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None

    def feed(self, chunk: ChatCompletionChunk) -> Iterator[TextDelta]:
        try:
            # The usage chunk has `choices: []` (some servers send null), and usage may come on any chunk.
            if chunk.usage is not None:
                self.usage = Usage(input_tokens=int(chunk.usage.prompt_tokens or 0),
                                   output_tokens=int(chunk.usage.completion_tokens or 0))
            choice = next((c for c in chunk.choices or () if c.index == 0), None)
            if choice is None:
                return
            delta = choice.delta
            for call in delta.tool_calls or ():
                self._add_call_piece(call)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            text = (delta.content or "") + (delta.refusal or "")  # a refusal is the model's answer too
        except (AttributeError, TypeError, ValueError):
            raise ProviderError("the model server sent a chunk this client does not understand",
                                kind=ErrorKind.MALFORMED_STREAM) from None
        if text:
            yield TextDelta(text)

    def _add_call_piece(self, piece: Any) -> None:
        index = piece.index
        if not isinstance(index, int):
            # Some compatible servers omit the index and send each call whole: a new id is a new call.
            index = len(self.calls) - 1 if self.calls and not piece.id else len(self.calls)
        call = self.calls.setdefault(index, _PendingCall())
        if piece.id:
            call.call_id = piece.id
        function = piece.function
        if function is not None:
            if function.name:
                call.name = function.name
            if function.arguments:
                call.arguments.append(function.arguments)

    def finish(self) -> Iterator[ProviderEvent]:
        if self.finish_reason is None:
            # Only a finish reason tells a complete answer from a connection that just ended early.
            raise ProviderError("the model's answer ended before it was complete (the stream stopped early)",
                                kind=ErrorKind.MALFORMED_STREAM)
        for index in sorted(self.calls):
            yield self._tool_call(self.calls[index])
        if self.usage is not None:
            yield self.usage
        yield Finish(self.finish_reason)

    def _tool_call(self, call: _PendingCall) -> ToolCall:
        if not call.name:
            raise ProviderError("the model asked for a tool call without naming the tool",
                                kind=ErrorKind.MALFORMED_STREAM)
        raw = "".join(call.arguments).strip()
        try:
            arguments = json.loads(raw) if raw else {}  # a call without arguments may send none at all
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            cut = " (the answer hit the model's length limit)" if self.finish_reason == "length" else ""
            raise ProviderError(
                f"the model sent arguments for tool {call.name!r} that are not a JSON object{cut}",
                kind=ErrorKind.MALFORMED_STREAM,
            )
        return ToolCall(call_id=call.call_id, name=call.name, arguments=arguments)


# -- errors -----------------------------------------------------------------------------------------------


def provider_error(exc: Exception, *, streaming: bool, timeouts: ModelTimeouts, server: str) -> ProviderError:
    """The plain-words ProviderError for an exception from the SDK (or from reading its stream)."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        if isinstance(exc.__cause__, httpx2.ReadTimeout):
            return ProviderError(f"no data from the model for {timeouts.idle:g} s", kind=ErrorKind.IDLE_TIMEOUT)
        return ProviderError(f"could not connect to the model server {server} within {timeouts.connect:g} s",
                             kind=ErrorKind.CONNECT_FAILED)
    if isinstance(exc, openai.APIConnectionError):
        if streaming:
            return ProviderError("the connection to the model server closed before the answer was complete",
                                 kind=ErrorKind.MALFORMED_STREAM)
        reason = f" ({exc.__cause__})" if exc.__cause__ and str(exc.__cause__) else ""
        return ProviderError(f"could not connect to the model server {server}{reason}",
                             kind=ErrorKind.CONNECT_FAILED)
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, openai.APIError):
        # An error event inside a stream that had started well: the server gave up on the answer.
        return ProviderError(f"the model server reported an error: {_server_message(exc)}",
                             kind=ErrorKind.SERVER_ERROR)
    if isinstance(exc, ValueError):  # json.JSONDecodeError, UnicodeDecodeError from the SSE decoder
        return ProviderError("the model server sent data that is not valid JSON", kind=ErrorKind.MALFORMED_STREAM)
    return ProviderError(f"the model call failed unexpectedly ({type(exc).__name__})")


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    status, message = exc.status_code, _server_message(exc)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderError(f"the model server refused the API key ({status}): {message}",
                             kind=ErrorKind.AUTHENTICATION)
    if isinstance(exc, openai.RateLimitError):
        retry_after = retry_after_seconds(exc.response.headers)
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return ProviderError(f"rate limited by the model server ({status}): {message}{wait}",
                             kind=ErrorKind.RATE_LIMITED, retry_after=retry_after)
    if status >= 500:
        return ProviderError(f"the model server failed ({status}): {message}", kind=ErrorKind.SERVER_ERROR)
    return ProviderError(f"the model server rejected the request ({status}): {message}",
                         kind=ErrorKind.BAD_REQUEST)


def _server_message(exc: openai.APIError) -> str:
    """The server's own explanation (`error.message` in OpenAI's format), or a fallback; never huge."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else body if isinstance(body, str) else None
    if not isinstance(message, str) or not message.strip():
        message = "no explanation given"
    return clip(message)
