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


@dataclass(frozen=True)
class Finish:
    reason: str = "stop"


ProviderEvent = TextDelta | ToolCall | Usage | Finish


@dataclass
class ProviderError(Exception):
    """A model call failed; `message` is shown to the user as is."""

    message: str
    kind: str = "provider_error"
    retry_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class Provider(Protocol):
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        """Yield text deltas and tool calls, then optionally usage, then Finish; raise ProviderError."""
        ...


def estimate_tokens(text: str) -> int:
    """A rough token count (≈ 4 characters a token) for when the provider reports no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0
