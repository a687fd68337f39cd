"""Run a shell command in the session's workspace, inside the sandbox (orchestrator/sandbox/).

A stop or a timeout kills the command's whole process tree (`sleep 30 & wait` included) before the tool
returns. Output (stdout and stderr interleaved) is kept up to HARNESS_TOOL_OUTPUT_LIMIT_BYTES; the rest
is counted and reported as truncated. A command that times out is killed, and the output it wrote until
then is part of the error.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ...sandbox import CappedOutput, CommandTimeout, SandboxUnavailable, command_run, workspace_prepare
from ..registry import Tool, ToolContext, ToolError, truncated


async def _shell(arguments: dict[str, Any], context: ToolContext) -> str:
    workspace_prepare(context.workspace)
    timeout = settings.HARNESS_SHELL_TIMEOUT_SECONDS
    try:
        result = await command_run(["/bin/sh", "-c", arguments["command"]], workspace=context.workspace,
                                   timeout=timeout, output_limit=settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES)
    except SandboxUnavailable as exc:
        raise ToolError(str(exc)) from None
    except CommandTimeout as exc:
        raise ToolError(f"timed out after {timeout:g} s" + (f"\n{_text(exc.output)}" if exc.output.kept else "")) from None
    return f"exit code {result.exit_code}\n{_text(result.output)}"


def _text(output: CappedOutput) -> str:
    return truncated(output.kept.decode("utf-8", errors="replace"), output.dropped)


shell = Tool(
    name="shell",
    description="Run a shell command in the session's workspace directory and return its output.",
    parameters={
        "type": "object",
        "properties": {"command": {"type": "string", "maxLength": 10000}},
        "required": ["command"],
        "additionalProperties": False,
    },
    run=_shell,
    approval="ask",
)
