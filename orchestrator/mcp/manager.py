"""This process's MCP connections, and the tools they give a run.

One `McpManager` per event loop (a worker process has one): a Streamable HTTP server gets one connection
shared by every run of the process; a stdio server gets one per (session, server) — a server process in
that session's sandbox, started the first time a run of the session needs its tools and stopped once the
session has had no live run for HARNESS_MCP_IDLE_SECONDS.

`tools_for_session` is what a run offers the model: each reachable server's tools as `Tool`s named
`mcp__<server>__<tool>` with the server's JSON Schema as their parameters; a server that cannot be reached
adds nothing (its reason is logged, kept for /healthz) and the run goes on with the other tools.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..engine.dbthread import engine_db
from ..engine.workspace import session_workspace
from ..models import TERMINAL_STATES, Run
from ..sandbox import workspace_prepare
from ..tools.registry import Tool, ToolContext, ToolError, ToolRegistry, truncated
from .config import McpConfigError, ServerConfig, load_config, tool_name
from .connection import STATUS, McpCallFailed, McpUnavailable, ServerConnection

logger = logging.getLogger(__name__)

REAP_EVERY_SECONDS_MAX = 30.0


@dataclass(frozen=True)
class ServerTools:
    """One server as a session sees it: its tools, or `reason` it is unavailable (and tools it refused)."""

    config: ServerConfig
    tools: list[Tool] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    reason: str = ""


class McpManager:
    def __init__(self, servers: list[ServerConfig]) -> None:
        self.servers = {server.name: server for server in servers}
        self.shared: dict[str, ServerConnection] = {}
        self.per_session: dict[tuple[str, str], ServerConnection] = {}
        self.refused: dict[str, str] = {}  # tool name → why it is not offered
        self._built: dict[int, tuple[Any, list[Tool]]] = {}
        self._reaper: asyncio.Task | None = None

    def connection(self, server: str, session_id) -> ServerConnection:
        config = self.servers[server]
        if config.transport == "http":
            if server not in self.shared:
                self.shared[server] = ServerConnection(config, label=server)
            return self.shared[server]
        key = (str(session_id), server)
        if key not in self.per_session:
            workspace = workspace_prepare(session_workspace(session_id))
            self.per_session[key] = ServerConnection(config, workspace=workspace,
                                                     label=f"{server} (session {session_id})")
            if self._reaper is None or self._reaper.done():
                self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="mcp idle reaper")
        return self.per_session[key]

    async def tools_for_session(self, session_id) -> list[Tool]:
        async def server_tools(config: ServerConfig) -> list[Tool]:
            try:
                connection = self.connection(config.name, session_id)
                await connection.current_tools()
            except McpUnavailable:
                return []
            except OSError as exc:  # the session's workspace could not be prepared: this server adds nothing
                logger.warning("MCP server %s: cannot start for session %s: %s", config.name, session_id, exc)
                return []
            return self._tools_of(connection)

        lists = await asyncio.gather(*(server_tools(config) for config in self.servers.values()))
        return [tool for tools in lists for tool in tools]

    async def servers_for_session(self, session_id, *, wait_seconds: float, start: bool = True) -> list[ServerTools]:
        """What each server offers a run of this session, as the Tools panel shows it: its tools (opening the
        connection as a run would, waiting at most `wait_seconds`), those refused and why, or why it is
        unavailable. `start=False` (a reader who cannot start runs): a session's stdio server not running yet is
        not started for them."""
        async def describe(config: ServerConfig) -> ServerTools:
            prefix = tool_name(config.name, "")
            if not start and config.transport != "http" and (str(session_id), config.name) not in self.per_session:
                return ServerTools(config, reason="not running: it starts with this session's next run")
            try:
                connection = self.connection(config.name, session_id)
                async with asyncio.timeout(wait_seconds):
                    await connection.current_tools()
            except McpUnavailable as exc:
                return ServerTools(config, reason=str(exc))
            except TimeoutError:
                return ServerTools(config, reason=f"still starting: no answer within {wait_seconds:g} s")
            except OSError as exc:
                return ServerTools(config, reason=f"the session's workspace cannot be prepared: {exc.strerror or exc}")
            tools = self._tools_of(connection)
            offered = {tool.name for tool in tools}
            refused = {name: reason for name, reason in self.refused.items()
                       if name.startswith(prefix) and name not in offered}
            return ServerTools(config, tools=tools, refused=refused)

        return list(await asyncio.gather(*(describe(config) for config in self.servers.values())))

    def _tools_of(self, connection: ServerConnection) -> list[Tool]:
        listed = connection.tools or []
        cached = self._built.get(id(connection))
        if cached is not None and cached[0] is listed:
            return cached[1]
        config = connection.config
        by_name: dict[str, list[types.Tool]] = {}
        for tool in listed:
            by_name.setdefault(tool_name(config.name, tool.name), []).append(tool)
        built = []
        for name, same in by_name.items():
            if len(same) > 1:
                self._refuse(name, f"tools {', '.join(repr(t.name) for t in same)} of server {config.name!r} "
                                   f"would all be named {name}")
                continue
            try:
                built.append(mcp_tool(config, same[0]))
            except ImproperlyConfigured as exc:
                self._refuse(name, str(exc))
        self._built[id(connection)] = (listed, built)
        return built

    def _refuse(self, name: str, reason: str) -> None:
        if self.refused.get(name) != reason:
            logger.warning("MCP tool %s is not offered: %s", name, reason)
        self.refused[name] = reason

    async def _reap(self) -> None:
        """Stop the stdio servers of sessions that have had no live run for HARNESS_MCP_IDLE_SECONDS."""
        idle = float(settings.HARNESS_MCP_IDLE_SECONDS)
        while self.per_session:
            await asyncio.sleep(min(max(idle / 2, 0.05), REAP_EVERY_SECONDS_MAX))
            try:
                await self._reap_once(idle)
            except Exception:  # e.g. the database is down for a moment: the next pass tries again
                logger.exception("MCP idle reaper: a pass failed; trying again later")

    async def _reap_once(self, idle: float) -> None:
        now = time.monotonic()
        for key, conn in list(self.per_session.items()):
            if not conn.alive and now - conn.last_used >= idle:  # failed or exited, and unused: forget it
                self._forget(key, conn)
        alive = {key: conn for key, conn in self.per_session.items() if conn.alive}
        if not alive:
            return
        live = await engine_db(_sessions_with_live_runs)({session for session, _ in alive})
        now = time.monotonic()
        for key, conn in alive.items():
            if key[0] in live:
                conn.last_used = now
            elif now - conn.last_used >= idle:
                logger.info("MCP server %s: stopped after %.0f s without a live run", conn.label, idle)
                self._forget(key, conn)  # first: a run starting while it closes gets a connection of its own
                await conn.close()

    def _forget(self, key: tuple[str, str], conn: ServerConnection) -> None:
        conn.retired = True
        if self.per_session.get(key) is conn:
            del self.per_session[key]
        self._built.pop(id(conn), None)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        connections = [*self.shared.values(), *self.per_session.values()]
        await asyncio.gather(*(conn.close() for conn in connections), return_exceptions=True)
        self.shared.clear()
        self.per_session.clear()


def _sessions_with_live_runs(session_ids: set[str]) -> set[str]:
    rows = Run.objects.filter(session_id__in=session_ids).exclude(state__in=TERMINAL_STATES)
    return {str(session_id) for session_id in rows.values_list("session_id", flat=True)}


def mcp_tool(config: ServerConfig, listed: types.Tool) -> Tool:
    """A registry `Tool` for one of a server's tools: its schema as-is, the server's policies."""
    policy = config.policy(listed.name)

    async def run(arguments: dict[str, Any], context: ToolContext) -> str:
        connection = get_manager().connection(config.name, context.session_id)
        try:
            result = await connection.call(listed.name, arguments, context.cancel_note)
        except (McpUnavailable, McpCallFailed) as exc:
            raise ToolError(str(exc)) from None
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or "the tool failed")
        return text

    return Tool(
        name=tool_name(config.name, listed.name),
        description=listed.description or listed.title or f"{listed.name} (MCP server {config.name})",
        parameters=listed.input_schema,
        run=run,
        approval=policy.approval,
        cancellation=policy.cancellation,
    )


def result_text(result: types.CallToolResult) -> str:
    """A call's result as the tool message: text joined, structured content as JSON, the rest summarised."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.ImageContent | types.AudioContent):
            parts.append(f"[{item.type}: {item.mime_type}, {_decoded_size(item.data)} bytes]")
        elif isinstance(item, types.EmbeddedResource):
            resource = item.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource {resource.uri}: {resource.mime_type or 'binary'}, "
                             f"{_decoded_size(resource.blob)} bytes]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource link: {item.uri}" + (f" ({item.mime_type})" if item.mime_type else "") + "]")
        else:
            parts.append(f"[{getattr(item, 'type', type(item).__name__)} content]")
    text = "\n".join(parts)
    if result.structured_content is not None:
        structured = json.dumps(result.structured_content, ensure_ascii=False)
        if structured not in parts and result.structured_content != {"result": text}:
            text = f"{text}\n{structured}" if text else structured
    limit = settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES
    encoded = text.encode("utf-8")
    if len(encoded) > limit:
        return truncated(encoded[:limit].decode("utf-8", errors="ignore"), len(encoded) - limit)
    return text


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data)


_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, McpManager] = weakref.WeakKeyDictionary()


def get_manager() -> McpManager:
    loop = asyncio.get_running_loop()
    manager = _managers.get(loop)
    if manager is None:
        try:
            servers = load_config()
        except McpConfigError as exc:  # refused by the system checks at start-up; said again here
            logger.error("MCP servers are not used: %s", exc)
            STATUS["configuration"] = (False, str(exc))
            servers = []
        manager = _managers[loop] = McpManager(servers)
    return manager


async def tools_for_run(base: ToolRegistry, session_id) -> ToolRegistry:
    """The tools a run of this session may use: the registry's, then its MCP servers' (none configured: the
    registry itself)."""
    if not settings.HARNESS_MCP_CONFIG:
        return base
    manager = get_manager()
    if not manager.servers:
        return base
    return ToolRegistry([*base, *await manager.tools_for_session(session_id)])


async def mcp_shutdown() -> None:
    """Close this loop's MCP connections (stdio servers stopped); for a worker's shutdown and tests."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    manager = _managers.pop(loop, None)
    if manager is not None:
        await manager.close()
        STATUS.clear()


def mcp_health() -> dict | None:
    """For /healthz: the configured servers and, per connection this process has made, its last state."""
    if not settings.HARNESS_MCP_CONFIG:
        return None
    body: dict[str, Any] = {"connections": {label: {"ok": ok, **({"reason": reason} if reason else {})}
                                            for label, (ok, reason) in sorted(STATUS.items())}}
    warnings = [f"{label}: {reason}" for label, (ok, reason) in sorted(STATUS.items()) if not ok]
    try:
        body["servers"] = [server.name for server in load_config()]
    except McpConfigError as exc:
        warnings.insert(0, str(exc))
    body["warnings"] = warnings
    return body
