"""Tools only the tests register (through HARNESS_EXTRA_TOOLS, the same path a deployment uses)."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.tools.registry import Tool, ToolContext

SIDE_EFFECTS = "side_effects.log"


async def _side_effect(arguments: dict[str, Any], context: ToolContext) -> str:
    """Records one side effect (a line in the workspace), then takes `seconds` to finish."""
    context.workspace.mkdir(parents=True, exist_ok=True)
    with open(context.workspace / SIDE_EFFECTS, "a", encoding="utf-8") as log:
        log.write(f"{arguments.get('label', 'effect')}\n")
    await asyncio.sleep(float(arguments.get("seconds", 0)))
    return f"did {arguments.get('label', 'effect')}"


side_effect = Tool(
    name="side_effect",
    description="Record a side effect, then wait.",
    parameters={
        "type": "object",
        "properties": {"label": {"type": "string"}, "seconds": {"type": "number", "minimum": 0}},
        "additionalProperties": False,
    },
    run=_side_effect,
)

forbidden = Tool(
    name="forbidden",
    description="A tool no one may run.",
    parameters={"type": "object", "properties": {}},
    run=_side_effect,
    approval="deny",
)


async def _finishing(arguments: dict[str, Any], context: ToolContext) -> str:
    await asyncio.sleep(float(arguments.get("seconds", 0)))
    context.workspace.mkdir(parents=True, exist_ok=True)
    (context.workspace / "finished.txt").write_text("finished", encoding="utf-8")
    return "finished"


finishing = Tool(
    name="finishing",
    description="Must finish once started.",
    parameters={"type": "object", "properties": {"seconds": {"type": "number"}}},
    run=_finishing,
    cancellation="must_finish",
)


def side_effects(workspace) -> list[str]:
    path = workspace / SIDE_EFFECTS
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []
