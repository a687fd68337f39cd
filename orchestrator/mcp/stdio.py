"""The stdio transport for an MCP server that runs in a session's sandbox.

The SDK's `stdio_client` starts its server with a plain subprocess; ours starts it through
`orchestrator.sandbox` (bubblewrap: the session's workspace at /workspace, the command's installation
read-only, no network unless the server's `network` is true, only the allowed environment) and then speaks
the same newline-delimited JSON-RPC over the process's stdin/stdout, as anyio memory streams a
`ClientSession` reads and writes. On exit: stdin is closed, the server gets a moment to leave, then its
whole sandbox is killed.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import mcp_types as types
from mcp.shared.message import SessionMessage

from ..sandbox import WORKDIR, Placement, Sandboxed, installation_paths, sandbox_start, sandbox_uid
from ..sandbox.policy import PATH
from .config import ServerConfig

EXIT_GRACE_SECONDS = 2.0
STDERR_LINES = 20
LINE_LIMIT = 64 * 1024 * 1024


@dataclass
class ServerProcess:
    """What we know of a running stdio server: its sandbox, whether it has ended, its last stderr lines."""

    sandboxed: Sandboxed | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    stderr: deque = field(default_factory=lambda: deque(maxlen=STDERR_LINES))

    def last_error(self) -> str:
        lines = [line for line in self.stderr if line.strip()]
        return lines[-1].strip()[:500] if lines else ""


def server_environment(config: ServerConfig) -> dict[str, str]:
    """HOME, LOGNAME, PATH, SHELL, TERM and USER as the sandbox has them, then the server's configured `env`."""
    uid = sandbox_uid()[0] if sandbox_uid() is not None else os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return {"HOME": WORKDIR, "LOGNAME": user, "PATH": PATH, "SHELL": "/bin/sh",
            "TERM": os.environ.get("TERM") or "dumb", "USER": user, **config.env}


def placement(config: ServerConfig) -> tuple[str, Placement]:
    command, installation = installation_paths(config.command or "")
    read_only = list(installation)
    if config.cwd and not any(Path(config.cwd).is_relative_to(path) for path in read_only):
        read_only.append(Path(config.cwd))
    return command, Placement(read_only=tuple(read_only), cwd=config.cwd, network=config.network,
                              environment=server_environment(config), long_lived=True)


@asynccontextmanager
async def sandboxed_stdio(config: ServerConfig, workspace: Path, process: ServerProcess) -> AsyncIterator[tuple]:
    command, where = placement(config)
    sandboxed = await sandbox_start(
        [command, *config.args], workspace=workspace, placement=where, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    process.sandboxed = sandboxed
    child = sandboxed.process
    child.stdout._limit = LINE_LIMIT  # one JSON-RPC message a line; the default 64 KiB is too small
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def stdout_reader() -> None:
        try:
            async with read_writer:
                while line := await child.stdout.readline():
                    try:
                        message = SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
                    except ValueError as exc:
                        message = exc
                    await read_writer.send(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError, ValueError):
            pass
        finally:
            process.ended.set()

    async def stdin_writer() -> None:
        try:
            async with write_reader:
                async for message in write_reader:
                    child.stdin.write((message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode())
                    await child.stdin.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError, OSError):
            await read_writer.aclose()

    async def stderr_reader() -> None:
        # In chunks, not lines: a server's progress bar can write a line longer than any buffer.
        pending = b""
        while chunk := await child.stderr.read(4096):
            *lines, pending = (pending + chunk).split(b"\n")
            process.stderr.extend(line.decode("utf-8", errors="replace") + "\n" for line in lines)
            pending = pending[-4096:]
        if pending:
            process.stderr.append(pending.decode("utf-8", errors="replace"))

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(stdout_reader)
            group.start_soon(stdin_writer)
            group.start_soon(stderr_reader)
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    await _stop(sandboxed)
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(sandboxed)
        process.ended.set()


async def _stop(sandboxed: Sandboxed) -> None:
    """Close the server's stdin (MCP's shutdown), give it EXIT_GRACE_SECONDS, then kill its whole sandbox."""
    child = sandboxed.process
    if child.returncode is None and child.stdin is not None and not child.stdin.is_closing():
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), EXIT_GRACE_SECONDS)
        except TimeoutError:
            pass
    if child.returncode is None or sandboxed.init_pidfd is not None:
        await sandboxed.kill()
    else:
        sandboxed.release()
