"""read_file / write_file, confined to the session's workspace: no absolute paths, no `..` out of it, no
symlink out of it.

A path is resolved and checked first, then opened one component at a time from the workspace with
O_NOFOLLOW, so a symlink planted between the check and the open (by a command still running in the
sandbox, say) makes the call fail instead of escaping. Files are read and written in chunks on a worker
thread, never on the event loop; a read keeps at most HARNESS_TOOL_OUTPUT_LIMIT_BYTES, a write is refused
past HARNESS_SANDBOX_FILE_SIZE_BYTES (the same limit the sandbox puts on any one file).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path
from typing import Any

from django.conf import settings

from ...sandbox import sandbox_uid, workspace_prepare
from ..registry import Tool, ToolContext, ToolError, truncated

CHUNK_BYTES = 64 * 1024
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def confined_path(workspace: Path, relative: str) -> tuple[Path, tuple[str, ...]]:
    """The workspace's real path and the parts of `relative` below it, with every symlink resolved."""
    root = workspace.resolve()
    try:
        target = (root / relative).resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte; a symlink loop (RuntimeError on Python 3.11)
        raise ToolError(f"invalid path {relative!r}") from None
    if not relative or Path(relative).is_absolute() or (target != root and root not in target.parents):
        raise ToolError(f"path {relative!r} is outside the session workspace")
    return root, target.relative_to(root).parts


def open_beneath(root: Path, parts: tuple[str, ...], flags: int, *, make_parents: bool = False) -> int:
    """Open root/parts[0]/…/parts[-1] following no symlink; with make_parents, create missing directories."""
    sandbox_user = sandbox_uid()
    directory = os.open(root, DIRECTORY_FLAGS)
    try:
        for part in parts[:-1]:
            if make_parents:
                try:
                    os.mkdir(part, 0o755, dir_fd=directory)
                    if sandbox_user is not None:
                        os.chown(part, *sandbox_user, dir_fd=directory, follow_symlinks=False)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, DIRECTORY_FLAGS, dir_fd=directory)
            except NotADirectoryError:
                if stat.S_ISLNK(os.stat(part, dir_fd=directory, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                raise
            os.close(directory)
            directory = child
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=directory)
    finally:
        os.close(directory)


def _read(root: Path, parts: tuple[str, ...], shown: str, limit: int) -> str:
    try:
        # O_NONBLOCK: a FIFO planted in the workspace must not hang the call on open.
        fd = open_beneath(root, parts, os.O_RDONLY | os.O_NONBLOCK) if parts else None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ToolError(f"no such file: {shown}") from None
        raise _os_error("read", shown, exc) from None
    if fd is None:
        raise ToolError(f"no such file: {shown}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"no such file: {shown}")
        data = bytearray()
        while len(data) < limit and (chunk := os.read(fd, min(CHUNK_BYTES, limit - len(data)))):
            data += chunk
    except OSError as exc:
        raise _os_error("read", shown, exc) from None
    finally:
        os.close(fd)
    return truncated(data.decode("utf-8", errors="replace"), max(info.st_size - len(data), 0))


def _write(root: Path, parts: tuple[str, ...], shown: str, content: bytes) -> None:
    try:
        if not parts:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        fd = open_beneath(root, parts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, make_parents=True)
        try:
            if (sandbox_user := sandbox_uid()) is not None:
                os.fchown(fd, *sandbox_user)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view[:CHUNK_BYTES]):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise _os_error("write", shown, exc) from None


def _os_error(verb: str, shown: str, exc: OSError) -> ToolError:
    """Say what went wrong without revealing where the workspace lives on the server."""
    if exc.errno == errno.ELOOP:  # a symlink appeared after the path was checked
        return ToolError(f"path {shown!r} is outside the session workspace")
    return ToolError(f"cannot {verb} {shown}: {exc.strerror or type(exc).__name__}")


async def _read_file(arguments: dict[str, Any], context: ToolContext) -> str:
    workspace_prepare(context.workspace)
    root, parts = confined_path(context.workspace, arguments["path"])
    return await asyncio.to_thread(_read, root, parts, arguments["path"], settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES)


async def _write_file(arguments: dict[str, Any], context: ToolContext) -> str:
    try:
        content = arguments["content"].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON but not text
        raise ToolError(f"cannot write {arguments['path']}: the content is not valid Unicode text") from None
    limit = settings.HARNESS_SANDBOX_FILE_SIZE_BYTES
    if len(content) > limit:
        raise ToolError(f"content is {len(content)} bytes, over the {limit}-byte file size limit")
    workspace_prepare(context.workspace)
    root, parts = confined_path(context.workspace, arguments["path"])
    await asyncio.to_thread(_write, root, parts, arguments["path"], content)
    return f"wrote {len(content)} bytes to {arguments['path']}"


read_file = Tool(
    name="read_file",
    description="Read a text file from the session's workspace.",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string", "maxLength": 1000}},
        "required": ["path"],
        "additionalProperties": False,
    },
    run=_read_file,
    idempotent=True,
)

write_file = Tool(
    name="write_file",
    description="Write a text file in the session's workspace (asks for approval).",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string", "maxLength": 1000}, "content": {"type": "string"}},
        "required": ["path", "content"],
        "additionalProperties": False,
    },
    run=_write_file,
    approval="ask",
    cancellation="must_finish",
)
