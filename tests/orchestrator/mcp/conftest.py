"""Real MCP servers for the tests (devtools/mcp_servers.py, the official SDK):

- `stdio_python`: `bin/python` of a sandbox-readable virtualenv that runs the server; a server configured with
  it (`stdio_server`) runs in the session's sandbox and records into its workspace.
- `http_server`: the same server over Streamable HTTP on 127.0.0.1, in a subprocess started and stopped by
  the test; it records into its own directory.
- `mcp_config`: writes HARNESS_MCP_CONFIG for a test.
"""

from __future__ import annotations

import pytest

from devtools.mcp_servers import HttpMcpServer, NoSystemPython, sandbox_python, write_config


@pytest.fixture(scope="session")
def stdio_python():
    try:
        return sandbox_python()
    except NoSystemPython as missing:
        pytest.skip(str(missing))


@pytest.fixture
def http_server(tmp_path):
    """The server over Streamable HTTP: (url, record directory, the process)."""
    with HttpMcpServer(tmp_path / "http-record") as server:
        yield server.url, server.record, server.process


@pytest.fixture
def mcp_config(settings, tmp_path):
    """Write a HARNESS_MCP_CONFIG file with these servers and point the settings at it."""

    def write(servers: dict):
        path = write_config(tmp_path / "mcp.json", servers)
        settings.HARNESS_MCP_CONFIG = str(path)
        return path

    return write
