"""Run a shell command in the session's workspace.

The command gets a process group of its own, so a stop or a timeout kills it *and* its children
(`sleep 30 & wait` included), and we wait for the group leader so no zombie is left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from django.conf import settings

from ..registry import Tool, ToolContext, ToolError

MAX_OUTPUT = 16 * 1024


async def _shell(arguments: dict[str, Any], context: ToolContext) -> str:
    context.workspace.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", arguments["command"],
        cwd=context.workspace,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=settings.HARNESS_SHELL_TIMEOUT_SECONDS)
    except TimeoutError:
        await kill_process_group(process)
        raise ToolError(f"timed out after {settings.HARNESS_SHELL_TIMEOUT_SECONDS:g} s") from None
    except asyncio.CancelledError:
        await kill_process_group(process)
        raise
    text = output[:MAX_OUTPUT].decode("utf-8", errors="replace")
    if len(output) > MAX_OUTPUT:
        text += f"\n… ({len(output) - MAX_OUTPUT} more bytes)"
    return f"exit code {process.returncode}\n{text}"


async def kill_process_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    # Reap the leader even if we are being cancelled, so the process is really gone when we return.
    await asyncio.shield(process.wait())


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
