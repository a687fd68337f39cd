"""Reads for the session page's Tools panel: every tool a run of the session is offered — the registry's
built-in (and HARNESS_EXTRA_TOOLS) tools, then each MCP server's — with its approval policy and whether it is
available now (and if not, why: the sandbox refuses commands, an MCP server did not start …).

MCP servers are asked through this process's `McpManager` on its event loop, exactly as a run asks them: in
`manage.py serve` that is the worker's own manager, so the panel shows the connections runs use (a stdio
server is started in the session's sandbox if no run has started it yet; the idle reaper stops it again).
"""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings

from .mcp.config import tool_name
from .mcp.manager import get_manager
from .sandbox import sandbox_state
from .tools.builtin.shell import shell
from .tools.registry import get_registry

# How long the panel waits for an MCP server that is still starting before it says so.
MCP_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ToolEntry:
    name: str
    description: str
    source: str  # "built-in", or e.g. "MCP server files (stdio)"
    approval: str  # auto | ask | deny
    available: bool
    reason: str = ""  # why it is unavailable


def session_tools(session_id, *, start_servers: bool = True) -> list[ToolEntry]:
    """The session's tools: built-in first (registry order), then each configured MCP server's, by name.
    `start_servers=False`: a session's stdio servers are not started to list them (for a viewer)."""
    entries = []
    for tool in get_registry():
        reason = ""
        if tool is shell and (state := sandbox_state()).mode == "refused":
            reason = state.refusal
        entries.append(ToolEntry(name=tool.name, description=tool.description, source="built-in",
                                 approval=tool.approval, available=not reason, reason=reason))
    if settings.HARNESS_MCP_CONFIG:
        entries.extend(async_to_sync(_mcp_tools)(str(session_id), start_servers))
    return entries


async def _mcp_tools(session_id: str, start: bool) -> list[ToolEntry]:
    entries = []
    for server in await get_manager().servers_for_session(session_id, wait_seconds=MCP_WAIT_SECONDS, start=start):
        config = server.config
        source = f"MCP server {config.name} ({config.transport})"
        if server.reason:
            # One row for all its tools: which it has is not known until it answers.
            entries.append(ToolEntry(name=tool_name(config.name, "") + "*", description="", source=source,
                                     approval=config.approval, available=False, reason=server.reason))
            continue
        rows = [ToolEntry(name=tool.name, description=tool.description, source=source, approval=tool.approval,
                          available=True) for tool in server.tools]
        rows += [ToolEntry(name=name, description="", source=source, approval=config.approval, available=False,
                           reason=reason) for name, reason in server.refused.items()]
        entries.extend(sorted(rows, key=lambda entry: entry.name))
    return entries
