"""One registry of tools: name, JSON schema, approval policy, cancellation policy, and the coroutine.

Policies:
- approval: ``auto`` runs at once, ``ask`` waits for a user's approval, ``deny`` never runs.
- cancellation: ``cancellable`` (default) is cancelled the moment the run is stopped; ``must_finish`` is
  allowed to complete (clients show "finishing <tool>…").
- idempotent: a call interrupted by a worker crash is re-run only if its tool says it is safe to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .schema import schema_problem

ApprovalPolicy = Literal["auto", "ask", "deny"]
CancellationPolicy = Literal["cancellable", "must_finish"]


class ToolError(Exception):
    """The tool ran and failed; its message becomes the call's result."""


def truncated(text: str, dropped: int) -> str:
    """A tool's output with the note every tool uses when it kept only the first part of it."""
    return f"{text}\n… (truncated: {dropped} more bytes)" if dropped else text


@dataclass
class CancelNote:
    """What a cancelled tool says about its call for the receipt, e.g. "server notified" (an MCP server was
    told to cancel it); empty when it has nothing to add."""

    note: str = ""


@dataclass(frozen=True)
class ToolContext:
    run_id: str
    session_id: str
    workspace: Path
    cancel_note: CancelNote = field(default_factory=CancelNote)


ToolFunction = Callable[[dict[str, Any], ToolContext], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: ToolFunction
    approval: ApprovalPolicy = "auto"
    cancellation: CancellationPolicy = "cancellable"
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.approval not in ("auto", "ask", "deny"):
            raise ImproperlyConfigured(f"tool {self.name}: approval must be auto, ask or deny")
        if self.cancellation not in ("cancellable", "must_finish"):
            raise ImproperlyConfigured(f"tool {self.name}: cancellation must be cancellable or must_finish")
        if (problem := schema_problem(self.parameters)) is not None:
            raise ImproperlyConfigured(f"tool {self.name}: its parameters are not a valid JSON Schema: {problem}")


BUILTIN_TOOLS = (
    "orchestrator.tools.builtin.clock.clock",
    "orchestrator.tools.builtin.calculator.calculator",
    "orchestrator.tools.builtin.sleep.sleep",
    "orchestrator.tools.builtin.shell.shell",
    "orchestrator.tools.builtin.files.read_file",
    "orchestrator.tools.builtin.files.write_file",
)


class ToolRegistry:
    def __init__(self, tools: list[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ImproperlyConfigured(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __iter__(self):
        return iter(self._tools.values())

    def names(self) -> list[str]:
        return list(self._tools)


def load_tool(path: str) -> Tool:
    try:
        tool = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"cannot import tool {path!r}: {exc}") from exc
    if not isinstance(tool, Tool):
        raise ImproperlyConfigured(f"{path!r} is not an orchestrator.tools.registry.Tool")
    return tool


@cache
def _registry_for(paths: tuple[str, ...]) -> ToolRegistry:
    return ToolRegistry([load_tool(path) for path in paths])


def get_registry() -> ToolRegistry:
    return _registry_for(BUILTIN_TOOLS + tuple(settings.HARNESS_EXTRA_TOOLS))
