"""The provider interface: one model call is an async stream of events, cancellable at any await.

The engine consumes `Provider.stream()` inside a task of its own and cancels that task when the run is
stopped; a provider must therefore release what it holds (HTTP responses, timers) in `finally`/`aclose`,
and must not swallow `asyncio.CancelledError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call the model asked for in an earlier turn (part of the history sent back)."""

    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ModelMessage:
    role: Literal["system", "user", "assistant", "tool"]
    text: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    # For role == "tool": which call this is the result of.
    tool_call_id: str = ""
    name: str = ""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ModelRequest:
    messages: tuple[ModelMessage, ...]
    tools: tuple[ToolSpec, ...]
    # The text that started this run and the 1-based assistant turn within it. Real providers ignore
    # them; the scripted model uses them to pick its script entry.
    run_input: str = ""
    turn: int = 1


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    estimated: bool = False
    # False: the counts so far, sent early (Anthropic's input count at message_start). If the stream ends
    # before a final Usage (a stop), the engine keeps the input count and estimates the output.
    final: bool = True


@dataclass(frozen=True)
class Finish:
    reason: str = "stop"


ProviderEvent = TextDelta | ToolCall | Usage | Finish


class ErrorKind:
    """What went wrong with a model call; decides whether the call may be retried (before its first event)."""

    AUTHENTICATION = "authentication"  # bad or missing API key, no permission
    RATE_LIMITED = "rate_limited"  # 429; `retry_after` when the server said
    SERVER_ERROR = "server_error"  # 5xx, overloaded
    BAD_REQUEST = "bad_request"  # 4xx other than the above: unknown model, context too long …
    MALFORMED_STREAM = "malformed_stream"  # the response could not be understood
    CONNECT_FAILED = "connect_failed"  # no connection (refused, DNS, connect timeout)
    IDLE_TIMEOUT = "idle_timeout"  # connected, but no chunk within the idle timeout
    PROVIDER_ERROR = "provider_error"  # anything else

    RETRYABLE = frozenset({RATE_LIMITED, SERVER_ERROR, CONNECT_FAILED})


@dataclass
class ProviderError(Exception):
    """A model call failed; `message` is shown to the user as is (plain words, no stack trace)."""

    message: str
    kind: str = ErrorKind.PROVIDER_ERROR
    retry_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.kind in ErrorKind.RETRYABLE


@dataclass(frozen=True)
class ModelTimeouts:
    """Per-phase limits for a model call: no single total timeout, since an answer may stream for minutes."""

    connect: float = 10.0  # seconds to open the connection
    idle: float = 60.0  # seconds without a chunk (between any two reads) before the call fails


class Provider(Protocol):
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        """Yield text deltas and tool calls, then optionally usage, then Finish; raise ProviderError.

        Never retries by itself: the engine retries retryable errors, and only before the first event.
        """
        ...


def estimate_tokens(text: str) -> int:
    """A rough token count (≈ 4 characters a token) for when the provider reports no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0
