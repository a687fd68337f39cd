"""What the Anthropic Messages API sends for ``POST /v1/messages`` with ``stream: true``.

Every SSE event has a name, and its JSON data repeats the name as ``type``:

- ``message_start``: the message with empty ``content``, ``stop_reason: null`` and the prompt's usage;
- per content block (``index`` counts from 0): ``content_block_start`` (``{"type": "text", "text": ""}`` or
  ``{"type": "tool_use", "id", "name", "input": {}}``), ``content_block_delta`` events (``text_delta``, or
  ``input_json_delta`` whose ``partial_json`` pieces — the first one empty — concatenate to the input's
  JSON), ``content_block_stop``;
- ``message_delta`` with ``stop_reason`` (``end_turn``, ``tool_use``, ``max_tokens`` …) and the cumulative
  ``usage.output_tokens``; then ``message_stop``.

``ping`` events may come anywhere (the API sends one right after the first block starts), and an ``error``
event (``{"type": "error", "error": {"type": "overloaded_error", …}}``) may end a stream that already
answered 200. Errors before the stream are HTTP errors with the same ``{"type": "error", "error": …}`` body.

    server.push(MessageEvents().text("Hel", "lo").end("end_turn", output_tokens=2).sse(delay=0.01))
"""

from __future__ import annotations

import json
from typing import Any

from .openai_wire import split
from .wire_server import ErrorResponse, SSEItem, SSEStream, json_events

MODEL = "claude-sonnet-4-6"


class MessageEvents:
    """A Messages stream, built event by event in the order the API sends them (message_start comes first
    by itself when a block is added before `start()`)."""

    def __init__(self, *, model: str = MODEL, message_id: str = "msg_01XFDUDYJgAACzvnptvVoYEL",
                 input_tokens: int = 25, cache_read_input_tokens: int = 0, ping: bool = True) -> None:
        self.model = model
        self.message_id = message_id
        self.input_tokens = input_tokens
        self.cache_read_input_tokens = cache_read_input_tokens
        self.ping_after_first_block = ping
        self.items: list[tuple[str, Any]] = []
        self._started = False
        self._next_index = 0

    def _add(self, name: str, data: dict[str, Any]) -> MessageEvents:
        self.items.append((name, {"type": name, **data}))
        return self

    # -- the message -------------------------------------------------------------------------------------

    def start(self) -> MessageEvents:
        self._started = True
        return self._add("message_start", {"message": {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": self.cache_read_input_tokens, "output_tokens": 1,
                "service_tier": "standard",
            },
        }})

    def ping(self) -> MessageEvents:
        self.items.append(("ping", {"type": "ping"}))
        return self

    def delta(self, stop_reason: str, output_tokens: int) -> MessageEvents:
        return self._add("message_delta", {
            "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": output_tokens},
        })

    def stop(self) -> MessageEvents:
        return self._add("message_stop", {})

    def end(self, stop_reason: str = "end_turn", output_tokens: int = 5) -> MessageEvents:
        return self.delta(stop_reason, output_tokens).stop()

    def error(self, error_type: str = "overloaded_error", message: str = "Overloaded") -> MessageEvents:
        return self._add("error", {"error": {"type": error_type, "message": message}})

    # -- content blocks ----------------------------------------------------------------------------------

    def block_start(self, content_block: dict[str, Any]) -> int:
        """Open a block; returns its index."""
        if not self._started:
            self.start()
        index = self._next_index
        self._next_index += 1
        self._add("content_block_start", {"index": index, "content_block": content_block})
        if index == 0 and self.ping_after_first_block:
            self.ping()
        return index

    def text_delta(self, index: int, *pieces: str) -> MessageEvents:
        for piece in pieces:
            self._add("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
        return self

    def input_json_delta(self, index: int, *pieces: str) -> MessageEvents:
        for piece in pieces:
            self._add("content_block_delta", {
                "index": index, "delta": {"type": "input_json_delta", "partial_json": piece},
            })
        return self

    def block_stop(self, index: int) -> MessageEvents:
        return self._add("content_block_stop", {"index": index})

    def text(self, *pieces: str) -> MessageEvents:
        """A whole text block streamed in `pieces`."""
        index = self.block_start({"type": "text", "text": ""})
        return self.text_delta(index, *pieces).block_stop(index)

    def tool_use(self, tool_id: str, name: str, arguments: dict[str, Any] | str, pieces: int = 1) -> MessageEvents:
        """A whole tool_use block: its input's JSON split over `pieces` deltas, after the empty first one."""
        index = self.block_start({"type": "tool_use", "id": tool_id, "name": name, "input": {}})
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
        return self.input_json_delta(index, "", *(split(raw, pieces) if raw else [])).block_stop(index)

    # -- output ------------------------------------------------------------------------------------------

    def events(self) -> list[SSEItem]:
        return json_events(self.items)

    def sse(self, **stream: Any) -> SSEStream:
        """The events as a scripted response; `stream` takes SSEStream's options (delay, end, framing …)."""
        return SSEStream(events=self.events(), headers=_STREAM_HEADERS | stream.pop("headers", {}), **stream)


_STREAM_HEADERS = {"request-id": "req_011CWfakeStream0001", "anthropic-organization-id": "fake-org"}


def text_answer(text: str, *, pieces: int = 1, input_tokens: int = 25, output_tokens: int = 5,
                **stream: Any) -> SSEStream:
    """A plain text answer streamed in `pieces` deltas, ending with end_turn."""
    events = MessageEvents(input_tokens=input_tokens).text(*split(text, pieces))
    return events.end("end_turn", output_tokens).sse(**stream)


def tool_use_answer(tool_id: str, name: str, arguments: dict[str, Any], *, text: str = "", pieces: int = 1,
                    **stream: Any) -> SSEStream:
    """An answer asking for one tool (optionally after some text), its input in `pieces` deltas."""
    events = MessageEvents()
    if text:
        events.text(text)
    return events.tool_use(tool_id, name, arguments, pieces).end("tool_use", 40).sse(**stream)


# -- errors, as the API sends them ------------------------------------------------------------------------

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` "
          "blocks: toolu_nope. Each `tool_result` block must have a corresponding `tool_use` block in the "
          "previous message."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: claude-nope"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization of 50,000 input "
          "tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message},
            "request_id": "req_011CWfakeError0001"}


def error_response(status: int, message: str | None = None, *, retry_after: str | None = None,
                   headers: dict[str, str] | None = None) -> ErrorResponse:
    """An HTTP error the way the API returns one (with `request-id`, and `retry-after` when given)."""
    error_type, default_message = _ERRORS.get(status, ("api_error", "Internal server error"))
    extra = {"request-id": "req_011CWfakeError0001",
             "x-should-retry": "true" if status in (408, 409, 429) or status >= 500 else "false",
             **(headers or {})}
    if retry_after is not None:
        extra["retry-after"] = retry_after
    return ErrorResponse(status, error_body(error_type, message or default_message), extra)
