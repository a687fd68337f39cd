"""A real MCP server for the tests and benchmarks (devtools/mcp_servers.py runs it), written with the official
SDK: `python mcp_test_server.py` speaks stdio, `python mcp_test_server.py http PORT` Streamable HTTP on
127.0.0.1:PORT/mcp. It imports nothing of the project: it runs in a sandbox with only its own packages.

It records what happens to its calls as files in RECORD_DIR (default: the working directory's `/workspace`
when there is one, else `.`): `started-<tag>` when `wait` begins, `cancelled-<tag>` when its handler is
cancelled (the client's cancellation reached it), `finished-<tag>` when it completes. `hold` waits for a
`release-<tag>` file there. Each record holds "<pid> <CLOCK_MONOTONIC ns> <wall clock ns>", written when it
happened (CLOCK_MONOTONIC is one clock for every process of the machine, so a benchmark compares it with its
own readings).
"""

import os
import sys
import time
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

WORKSPACE = Path("/workspace")
RECORD = Path(os.environ.get("RECORD_DIR") or (WORKSPACE if WORKSPACE.is_dir() else "."))
server = MCPServer("harness-test")


def mark(name: str) -> None:
    now = f"{os.getpid()} {time.clock_gettime_ns(time.CLOCK_MONOTONIC)} {time.time_ns()}"
    partial = RECORD / f".{name}"
    partial.write_text(now, encoding="utf-8")
    partial.rename(RECORD / name)  # whole or absent: a reader never sees half a line


@server.tool()
async def wait(seconds: float, tag: str) -> str:
    """Wait `seconds`, recording when it starts, finishes or is cancelled."""
    mark(f"started-{tag}")
    try:
        await anyio.sleep(seconds)
    except BaseException:
        mark(f"cancelled-{tag}")
        raise
    mark(f"finished-{tag}")
    return f"waited {seconds:g} s"


@server.tool()
async def hold(tag: str, then: str) -> str:
    """Wait until the file `release-<tag>` appears, then answer ("answer") or exit without one ("exit")."""
    mark(f"started-{tag}")
    while not (RECORD / f"release-{tag}").exists():
        await anyio.sleep(0.005)
    if then == "exit":
        os._exit(3)
    return "released"


@server.tool()
def repeat(text: str, times: int) -> str:
    """Repeat `text`."""
    return text * times


@server.tool()
def fail(message: str) -> str:
    """Always fails with `message`."""
    raise ToolError(message)


@server.tool()
def crash(tag: str) -> str:
    """The server exits in the middle of the call."""
    mark(f"started-{tag}")
    os._exit(3)


@server.tool()
def listing() -> str:
    """The names in the workspace (HOME)."""
    return " ".join(sorted(os.listdir(os.environ.get("HOME", ".")))) or "(empty)"


@server.tool()
def touch(path: str) -> str:
    """Try to create the file `path`: "created", or why not."""
    try:
        Path(path).write_text("x", encoding="utf-8")
    except OSError as exc:
        return f"refused: {exc.strerror}"
    return "created"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named `extra` and tell the client its tools changed."""
    server.add_tool(lambda: "extra!", name="extra", description="Added at run time.")
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
