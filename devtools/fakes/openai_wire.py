"""What the OpenAI Chat Completions API sends for ``POST /v1/chat/completions`` with ``stream: true``.

Every chunk is a ``data: {json}`` SSE event (no event names) with ``object: "chat.completion.chunk"`` and the
same ``id``/``created``/``model``; the first carries ``delta.role``, text arrives as ``delta.content`` pieces,
tool calls as ``delta.tool_calls`` pieces keyed by ``index`` (id, type and name on the first piece of each
call, the JSON ``function.arguments`` split over many), then a chunk with ``finish_reason``. With
``stream_options.include_usage`` every chunk has ``usage: null`` and one last chunk has ``choices: []`` and
the usage. The stream ends with ``data: [DONE]``.

    server.push(ChatChunks().text("Hel", "lo").finish("stop").usage(12, 2).sse(delay=0.01))
"""

from __future__ import annotations

import json
from typing import Any

from .wire_server import ErrorResponse, SSEItem, SSEStream

DONE: SSEItem = (None, "[DONE]")


def split(text: str, pieces: int) -> list[str]:
    """`text` cut into `pieces` non-empty parts (fewer if it is shorter), as a model streams it."""
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    parts, start = [], 0
    for index in range(pieces):
        end = start + size + (1 if index < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts


class ChatChunks:
    """A chat.completion.chunk stream, built one chunk at a time in the order the API sends them."""

    def __init__(self, *, model: str = "gpt-4.1-mini-2025-04-14", completion_id: str = "chatcmpl-Bx7fake0001",
                 created: int = 1_750_000_000, include_usage: bool = True) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.chunks: list[dict[str, Any]] = []
        self._role_sent = False

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> ChatChunks:
        chunk: dict[str, Any] = {
            "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "service_tier": "default", "system_fingerprint": "fp_fake0001",
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        self.chunks.append(chunk)
        return self

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> ChatChunks:
        if not self._role_sent:
            # The API's first chunk names the role (with empty content when a tool call follows at once).
            delta = {"role": "assistant", "content": delta.pop("content", ""), "refusal": None, **delta}
            self._role_sent = True
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def role(self) -> ChatChunks:
        return self._delta({"content": ""})

    def text(self, *pieces: str) -> ChatChunks:
        for piece in pieces:
            self._delta({"content": piece})
        return self

    def tool_call_start(self, index: int, call_id: str, name: str) -> ChatChunks:
        return self._delta({"tool_calls": [
            {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        ]})

    def tool_call_arguments(self, index: int, *pieces: str) -> ChatChunks:
        for piece in pieces:
            self._delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return self

    def tool_call(self, index: int, call_id: str, name: str, arguments: dict[str, Any] | str,
                  pieces: int = 1) -> ChatChunks:
        """A whole tool call: its first piece, then its JSON arguments split over `pieces` chunks."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return self.tool_call_start(index, call_id, name).tool_call_arguments(index, *split(raw, pieces))

    def finish(self, reason: str = "stop") -> ChatChunks:
        return self._delta({}, finish_reason=reason)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> ChatChunks:
        return self._chunk([], usage={
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        })

    def events(self, *, done: bool = True) -> list[SSEItem]:
        items: list[SSEItem] = [(None, json.dumps(chunk, separators=(",", ":"))) for chunk in self.chunks]
        return [*items, DONE] if done else items

    def sse(self, *, done: bool = True, **stream: Any) -> SSEStream:
        """The chunks as a scripted response; `stream` takes SSEStream's options (delay, end, framing …)."""
        return SSEStream(events=self.events(done=done), **stream)


def text_answer(text: str, *, pieces: int = 1, prompt_tokens: int = 10, completion_tokens: int = 5,
                role_chunk: bool = True, **stream: Any) -> SSEStream:
    """A plain text answer streamed in `pieces` chunks, with usage. `role_chunk=False`: no text-less first
    chunk, the role rides on the first piece of text (so with a `delay`, text is the very first chunk sent)."""
    chunks = ChatChunks()
    if role_chunk:
        chunks.role()
    chunks.text(*split(text, pieces)).finish("stop").usage(prompt_tokens, completion_tokens)
    return chunks.sse(**stream)


def tool_call_answer(call_id: str, name: str, arguments: dict[str, Any] | str, *, text: str = "", pieces: int = 1,
                     **stream: Any) -> SSEStream:
    """An answer asking for one tool call (optionally after some text), its arguments in `pieces` chunks."""
    chunks = ChatChunks().role()
    if text:
        chunks.text(text)
    return chunks.tool_call(0, call_id, name, arguments, pieces).finish("tool_calls").usage(20, 8).sse(**stream)


# -- errors, as the API sends them ------------------------------------------------------------------------

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
          "'tool_calls'.", "invalid_request_error", None),
    401: ("Incorrect API key provided: sk-wrong. You can find your API key at "
          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: ("The model `gpt-nope` does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    429: ("Rate limit reached for gpt-4.1-mini in organization org-fake on tokens per min (TPM): Limit 30000, "
          "Used 29500, Requested 1200. Please try again in 2s.", "tokens", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error_response(status: int, message: str | None = None, *, retry_after: str | None = None,
                   headers: dict[str, str] | None = None) -> ErrorResponse:
    """An error the way the API returns one: ``{"error": {"message", "type", "param", "code"}}``."""
    default_message, error_type, code = _ERRORS.get(status, ("Something went wrong.", "server_error", None))
    extra = {"x-request-id": "req_fake0001", **(headers or {})}
    if retry_after is not None:
        extra["retry-after"] = retry_after
    body = {"error": {"message": message or default_message, "type": error_type, "param": None, "code": code}}
    return ErrorResponse(status, body, extra)
