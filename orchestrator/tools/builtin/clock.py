from __future__ import annotations

from typing import Any

from django.utils import timezone

from ..registry import Tool, ToolContext


async def _clock(arguments: dict[str, Any], context: ToolContext) -> str:
    return timezone.now().strftime("%Y-%m-%d %H:%M:%S UTC")


clock = Tool(
    name="clock",
    description="The current date and time (UTC).",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    run=_clock,
    idempotent=True,
)
