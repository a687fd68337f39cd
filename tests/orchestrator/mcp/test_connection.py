"""One connection to a real MCP server: the stdio server in a session's sandbox (its venv read-only, the
workspace its only writable place), the HTTP one in a subprocess; calls, cancellation through the SDK,
a server dying mid-call, a server that never starts, tools/list_changed."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.mcp.config import ServerConfig, load_config
from orchestrator.mcp.connection import McpCallFailed, McpUnavailable, ServerConnection
from orchestrator.sandbox import workspace_prepare
from orchestrator.services.calls import SERVER_NOTIFIED
from orchestrator.tools.registry import CancelNote
from devtools.mcp_servers import stdio_server

pytestmark = pytest.mark.django_db(transaction=True)


def config_of(mcp_config, **servers) -> dict[str, ServerConfig]:
    return {server.name: server for server in load_config(mcp_config(servers))}


async def wait_file(path, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        assert loop.time() < deadline, f"timed out waiting for {path.name}"
        await asyncio.sleep(0.01)


async def cancel_mid_call(connection: ServerConnection, record, tag: str) -> None:
    """Cancel the task awaiting a slow call once the server's handler has started: the SDK tells the server,
    whose handler records its own cancellation."""
    note = CancelNote()
    call = asyncio.ensure_future(connection.call("wait", {"seconds": 60, "tag": tag}, note))
    await wait_file(record / f"started-{tag}")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert note.note == SERVER_NOTIFIED
    await wait_file(record / f"cancelled-{tag}")


@pytest.fixture
def workspace(settings):
    return workspace_prepare(settings.HARNESS_WORKSPACE_ROOT / "session-a")


async def test_a_stdio_server_runs_in_the_sandbox_and_a_cancelled_call_reaches_its_handler(mcp_config, stdio_python,
                                                                                           workspace):
    config = config_of(mcp_config, files=stdio_server(stdio_python))["files"]
    connection = ServerConnection(config, workspace=workspace)
    try:
        await connection.ready()
        assert {"wait", "repeat", "fail", "crash", "listing", "grow"} <= {tool.name for tool in connection.tools}
        (workspace / "mine.txt").write_text("x")
        result = await connection.call("listing", {}, CancelNote())
        assert result.content[0].text == "mine.txt"

        # What it can reach: the workspace, writable; its own installation and directory, read-only.
        assert (await connection.call("touch", {"path": "/workspace/new.txt"}, CancelNote())).content[0].text == "created"
        for path in (stdio_python.parent / "x", stdio_python.parent.parent.parent / "server" / "x"):
            result = await connection.call("touch", {"path": str(path)}, CancelNote())
            assert result.content[0].text == "refused: Read-only file system"
        assert (await connection.call("touch", {"path": str(workspace.parent / "other" / "x")}, CancelNote())
                ).content[0].text == "refused: No such file or directory"

        await cancel_mid_call(connection, workspace, "c1")
        assert not (workspace / "finished-c1").exists()
        # The connection is still good.
        assert (await connection.call("repeat", {"text": "ab", "times": 2}, CancelNote())).content[0].text == "abab"
    finally:
        await connection.close()
    assert connection.process.ended.is_set() and connection.process.sandboxed.process.returncode is not None


async def test_a_server_that_dies_mid_call_fails_that_call_and_is_reopened(mcp_config, stdio_python, workspace):
    config = config_of(mcp_config, files=stdio_server(stdio_python))["files"]
    connection = ServerConnection(config, workspace=workspace)
    try:
        with pytest.raises(McpCallFailed, match="stopped during the call"):
            await connection.call("crash", {"tag": "k"}, CancelNote())
        assert (workspace / "started-k").exists()
        assert "exited" in connection.reason
        with pytest.raises(McpUnavailable, match="exited"):  # within the backoff
            await connection.ready()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:  # opened again once the backoff has passed
            try:
                result = await connection.call("repeat", {"text": "x", "times": 3}, CancelNote())
                break
            except McpUnavailable:
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
        assert result.content[0].text == "xxx"
    finally:
        await connection.close()


async def test_a_server_that_never_starts_is_unavailable_with_a_reason(mcp_config, workspace):
    config = config_of(mcp_config, broken={"command": "/nonexistent/bin/mcp-server"})["broken"]
    connection = ServerConnection(config, workspace=workspace)
    try:
        with pytest.raises(McpUnavailable) as raised:
            await connection.ready()
        assert "did not start" in str(raised.value) or "exited" in str(raised.value)
        # Within the backoff, the reason comes back at once.
        with pytest.raises(McpUnavailable):
            await connection.ready()
    finally:
        await connection.close()


async def test_http_call_cancelled_reaches_the_handler_and_list_changed_refreshes(mcp_config, http_server):
    url, record, _ = http_server
    config = config_of(mcp_config, search={"url": url})["search"]
    connection = ServerConnection(config)
    try:
        await connection.ready()
        assert "extra" not in {tool.name for tool in connection.tools}
        await cancel_mid_call(connection, record, "h1")

        listed = connection.tools
        await connection.call("grow", {}, CancelNote())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while connection.tools is listed or "extra" not in {tool.name for tool in connection.tools}:
            assert loop.time() < deadline, "the tool list was not refreshed"
            await asyncio.sleep(0.01)
    finally:
        await connection.close()


async def test_an_http_server_killed_mid_call_fails_the_call(mcp_config, http_server):
    url, record, process = http_server
    config = config_of(mcp_config, search={"url": url, "timeout_seconds": 20})["search"]
    connection = ServerConnection(config)
    try:
        call = asyncio.ensure_future(connection.call("wait", {"seconds": 60, "tag": "h2"}, CancelNote()))
        await wait_file(record / "started-h2")
        process.kill()
        with pytest.raises(McpCallFailed):
            await call
    finally:
        await connection.close()
