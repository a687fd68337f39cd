"""One connection to one MCP server, owned by one asyncio task.

The SDK's task groups must be exited by the task that entered them, so each connection has an owner task
that opens the transport and the `ClientSession`, initialises it, lists the tools, then waits — for a
`notifications/tools/list_changed` (it lists again), for the transport to end, or to be closed — and closes
everything itself. Callers never enter or exit anything: they wait for the session to be ready (opened
lazily, on first use) and await `call_tool` in their own task, so a stop that cancels that task makes the
SDK tell the server (stdio: `notifications/cancelled`; Streamable HTTP: the request's POST is closed).

A connection that fails (cannot start, cannot connect, died) says why (`reason`) and is opened again on the
next use after a backoff (1 s, doubling to 30 s); until then its tools are unavailable with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ..aio import complete_despite_cancel
from ..sandbox import SandboxUnavailable
from ..services.calls import MAY_HAVE_PARTLY_RUN, SERVER_NOTIFIED
from ..tools.registry import CancelNote
from .config import ServerConfig
from .stdio import ServerProcess, sandboxed_stdio

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# The SDK sends its cancellation notice shielded and capped at 5 s; we wait for the cancelled call that long.
CANCEL_SEND_SECONDS = 5.0

# Each server's last connection state in this process, for /healthz: server name → (ok, reason).
STATUS: dict[str, tuple[bool, str]] = {}


class McpUnavailable(Exception):
    """The server cannot be used now; the message says why in plain words."""


class McpCallFailed(Exception):
    """The call did not produce a result (the server died, the connection broke, it timed out …)."""


class ServerConnection:
    def __init__(self, config: ServerConfig, *, workspace: Path | None = None, label: str = "") -> None:
        self.config = config
        self.workspace = workspace
        self.label = label or config.name
        self.session: ClientSession | None = None
        self.tools: list[types.Tool] | None = None
        self.reason = ""
        self.last_used = time.monotonic()
        self._owner: asyncio.Task | None = None
        self._ready: asyncio.Future | None = None
        self._close = asyncio.Event()
        self._refresh = asyncio.Event()
        self._listed = asyncio.Event()  # the tool list is current (no tools/list_changed since it was taken)
        self._lost = asyncio.Event()
        self._failures = 0
        self._retry_at = 0.0
        self._closing = False  # close() was called: the end of the connection is no failure
        self.retired = False  # the manager forgot it (idle): it must never open again, or no one would stop it
        self._broken_reason = ""
        self.process: ServerProcess | None = None

    @property
    def alive(self) -> bool:
        return self._owner is not None and not self._owner.done()

    async def ready(self) -> ClientSession:
        """The initialised session, opening the connection if need be; McpUnavailable if it cannot be had."""
        self.last_used = time.monotonic()
        if self.retired:
            raise McpUnavailable(f"the MCP server {self.label} was stopped after being idle; the next run starts it again")
        if self.alive and (self._close.is_set() or self._lost.is_set() or (self.process and self.process.ended.is_set())):
            if await complete_despite_cancel(self._owner):  # going down: let it finish, then open anew
                raise asyncio.CancelledError
        if not self.alive:
            if self.reason and time.monotonic() < self._retry_at:
                raise McpUnavailable(self.reason)
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._closing = False
            self._broken_reason = ""
            self._listed.clear()
            self._close.clear()
            self._lost.clear()
            self._owner = loop.create_task(self._own(self._ready), name=f"mcp {self.label}")
        return await asyncio.shield(self._ready)

    async def current_tools(self) -> list[types.Tool]:
        """The server's tools, waiting for a re-listing the server asked for (tools/list_changed) if one is due."""
        await self.ready()
        if not self._listed.is_set():
            waits = [asyncio.ensure_future(self._listed.wait()), asyncio.ensure_future(self._lost.wait())]
            try:
                await asyncio.wait(waits, timeout=self.config.timeout_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
        return self.tools or []

    async def close(self) -> None:
        """Close the session and stop the server (a stdio server's sandbox is gone when this returns)."""
        self._closing = True
        self._close.set()
        if self._owner is not None and await complete_despite_cancel(self._owner):
            raise asyncio.CancelledError

    async def _own(self, ready: asyncio.Future) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self.config.timeout_seconds):
                    read, write = await stack.enter_async_context(self._transport())
                    session = await stack.enter_async_context(
                        ClientSession(read, write, message_handler=self._on_message))
                    await session.initialize()
                    self.tools = await _list_tools(session)
                    self._listed.set()
                self.session, self.reason, self._failures = session, "", 0
                STATUS[self.config.name] = (True, "")
                ready.set_result(session)
                await self._serve(session)
            if not self._closing:
                self._failed(self._ended_reason())
        except asyncio.CancelledError:
            self._failed("the connection was closed")
            raise
        except Exception as exc:
            self._failed(self._describe(exc))
        finally:
            self.session = None
            self._lost.set()
            if not ready.done():
                ready.set_exception(McpUnavailable(self.reason or "the connection was closed"))
                ready.exception()  # retrieved: no "never retrieved" warning when nobody waited

    async def _serve(self, session: ClientSession) -> None:
        while True:
            waits = [asyncio.ensure_future(self._close.wait()), asyncio.ensure_future(self._refresh.wait())]
            if self.process is not None:
                waits.append(asyncio.ensure_future(self.process.ended.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
            if self._close.is_set() or (self.process is not None and self.process.ended.is_set()):
                return
            self._refresh.clear()
            async with asyncio.timeout(self.config.timeout_seconds):
                self.tools = await _list_tools(session)
            if not self._refresh.is_set():
                self._listed.set()

    def _transport(self):
        if self.config.transport == "stdio":
            self.process = ServerProcess()
            return sandboxed_stdio(self.config, self.workspace, self.process)
        client = httpx2.AsyncClient(headers=self.config.headers,
                                    timeout=httpx2.Timeout(self.config.timeout_seconds, read=None))
        return _http(self.config.url, client)

    async def _on_message(self, message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._listed.clear()
            self._refresh.set()

    async def mark_broken(self, reason: str, owner: asyncio.Task | None) -> None:
        """A call found the connection it used (`owner`'s) unusable: close it (and wait for that, so `reason`
        is the end's); the next use opens it again after the backoff. If it has been reopened since (a shared
        HTTP connection, while this call was cancelling), the new one is not this call's to close."""
        if owner is not self._owner:
            return
        self._broken_reason = reason
        self._close.set()
        if self._owner is not None:
            if await complete_despite_cancel(self._owner):
                raise asyncio.CancelledError

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self.reason = reason
        self._retry_at = time.monotonic() + min(BACKOFF_FIRST_SECONDS * 2 ** (self._failures - 1), BACKOFF_MAX_SECONDS)
        STATUS[self.config.name] = (False, reason)
        logger.warning("MCP server %s: %s", self.label, reason)

    def _ended_reason(self) -> str:
        if self.process is not None and self.process.ended.is_set():
            detail = self.process.last_error()
            return "the server exited" + (f": {detail}" if detail else "")
        if self.process is not None and self.process.last_error():
            return f"the server failed: {self.process.last_error()}"
        return self._broken_reason or "the connection ended"

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer from the server within {self.config.timeout_seconds:g} s"
        if isinstance(exc, BaseExceptionGroup):
            return self._describe(exc.exceptions[0])
        if isinstance(exc, SandboxUnavailable):
            return str(exc)
        if self.process is not None and (self.process.ended.is_set() or self.process.last_error()):
            detail = self.process.last_error()
            return "the server did not start" + (f": {detail}" if detail else "")
        if isinstance(exc, httpx2.HTTPError):
            return f"cannot reach {self.config.url}: {type(exc).__name__}" + (f" ({exc})" if str(exc) else "")
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    async def call(self, tool: str, arguments: dict, note: CancelNote) -> types.CallToolResult:
        """Call `tool`; McpUnavailable / McpCallFailed when there is no result. If the caller is cancelled
        (a stop) while the call is in flight, the task awaiting `call_tool` is cancelled so the SDK tells the
        server, and `note` says whether it was told."""
        session = await self.ready()
        owner, lost = self._owner, self._lost
        call = asyncio.ensure_future(session.call_tool(tool, arguments))
        watch = asyncio.ensure_future(lost.wait())
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                await asyncio.wait({call, watch}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            await _cancel(call)
            raise McpCallFailed(f"no answer from the MCP server within {self.config.timeout_seconds:g} s; the "
                                f"server was told to cancel the call") from None
        except asyncio.CancelledError:
            if call.done() or lost.is_set():
                note.note = MAY_HAVE_PARTLY_RUN  # it had answered already, or it is gone
            else:
                note.note = SERVER_NOTIFIED
            await _cancel(call)
            raise
        finally:
            watch.cancel()
            self.last_used = time.monotonic()
        if not call.done():
            await _cancel(call)
            await self.mark_broken("the connection ended", owner)
            raise McpCallFailed(f"the MCP server {self.config.name!r} stopped during the call ({self.reason})")
        try:
            return call.result()
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                await self.mark_broken("the connection closed", owner)
                raise McpCallFailed(f"the MCP server {self.config.name!r} stopped during the call "
                                    f"({self.reason})") from None
            raise McpCallFailed(f"the MCP server answered with an error: {exc.error.message}") from None
        except (httpx2.HTTPError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError,
                anyio.EndOfStream) as exc:
            await self.mark_broken(f"{type(exc).__name__}: {exc}", owner)
            raise McpCallFailed(f"the connection to the MCP server {self.config.name!r} failed: "
                                f"{type(exc).__name__}") from None


async def _cancel(call: asyncio.Future) -> None:
    """Cancel the task awaiting `call_tool` (the SDK then notifies the server) and wait for it to end."""
    if call.done():
        return
    call.cancel()
    waiter = asyncio.ensure_future(asyncio.wait({call}, timeout=CANCEL_SEND_SECONDS))
    cancelled = await complete_despite_cancel(waiter)
    if call.done() and not call.cancelled():
        call.exception()  # retrieved
    if cancelled:
        raise asyncio.CancelledError


async def _list_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


@contextlib.asynccontextmanager
async def _http(url: str, client: httpx2.AsyncClient):
    async with client, streamable_http_client(url, http_client=client) as streams:
        yield streams
