from __future__ import annotations

import asyncio
from typing import Any

from ..registry import Tool, ToolContext


async def _sleep(arguments: dict[str, Any], context: ToolContext) -> str:
    seconds = float(arguments["seconds"])
    await asyncio.sleep(seconds)  # cancellable: a stop cancels the task here
    return f"slept {seconds:g} s"


sleep = Tool(
    name="sleep",
    description="Wait for the given number of seconds.",
    parameters={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
    run=_sleep,
    idempotent=True,
)
