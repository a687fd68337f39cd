"""read_file / write_file, confined to the session's workspace (no absolute paths, no `..`, no symlink
escapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import Tool, ToolContext, ToolError

MAX_READ = 64 * 1024


def confined_path(workspace: Path, relative: str) -> Path:
    root = workspace.resolve()
    try:
        target = (root / relative).resolve()
    except (OSError, ValueError):  # a NUL byte, a symlink loop
        raise ToolError(f"invalid path {relative!r}") from None
    if not relative or Path(relative).is_absolute() or (target != root and root not in target.parents):
        raise ToolError(f"path {relative!r} is outside the session workspace")
    return target


async def _read_file(arguments: dict[str, Any], context: ToolContext) -> str:
    context.workspace.mkdir(parents=True, exist_ok=True)
    path = confined_path(context.workspace, arguments["path"])
    if not path.is_file():
        raise ToolError(f"no such file: {arguments['path']}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ToolError(f"cannot read {arguments['path']}: {exc.strerror or type(exc).__name__}") from None
    text = data[:MAX_READ].decode("utf-8", errors="replace")
    return text if len(data) <= MAX_READ else text + f"\n… ({len(data) - MAX_READ} more bytes)"


async def _write_file(arguments: dict[str, Any], context: ToolContext) -> str:
    context.workspace.mkdir(parents=True, exist_ok=True)
    path = confined_path(context.workspace, arguments["path"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(arguments["content"], encoding="utf-8")
    except (OSError, ValueError) as exc:
        # Say what went wrong without revealing where the workspace lives on the server.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ToolError(f"cannot write {arguments['path']}: {reason}") from None
    return f"wrote {len(arguments['content'].encode('utf-8'))} bytes to {arguments['path']}"


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
