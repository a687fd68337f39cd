"""Real MCP servers for the tests (tests/orchestrator/mcp/mcp_test_server.py, the official SDK):

- `stdio_python`: a virtualenv the sandbox's user can read, made from the system's Python 3.11 with the
  test server's packages hard-linked from the project's .venv (whose own interpreter lives under a /root
  the sandbox's user cannot traverse on this machine); its directory holds the server script, and a server
  configured with that venv's `bin/python` runs in the session's sandbox with the venv shown read-only.
- `http_server`: the same server over Streamable HTTP on 127.0.0.1, in a subprocess started and stopped by
  the test; it records into its own directory.
- `mcp_config`: writes HARNESS_MCP_CONFIG for a test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.process import stop_process
from devtools.servers import free_port, port_open, sandbox_reachable_dir
from devtools.waiting import wait_for

HERE = Path(__file__).parent
SERVER = HERE / "mcp_test_server.py"
SYSTEM_PYTHON = "/usr/bin/python3.11"

_FIND_PACKAGES = """
import sys, sysconfig
sys.argv = ["x"]
import mcp.server.mcpserver, mcp.server.stdio, anyio._backends._asyncio  # what the server imports at run time
site = sysconfig.get_paths()["purelib"]
names = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if path.startswith(site + "/"):
        names.add(path[len(site) + 1:].split("/")[0])
print("\\n".join(sorted(names)))
"""


@pytest.fixture(scope="session")
def stdio_python() -> Path:
    """`bin/python` of a sandbox-readable virtualenv that can run the test server; its directory `server/`
    holds the server script."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} is needed for a virtualenv the sandbox's user can read")
    root = sandbox_reachable_dir("harness-mcp-venv-")
    root.chmod(0o755)
    venv = root / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    source = Path(subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    names = subprocess.run([sys.executable, "-c", _FIND_PACKAGES], check=True, capture_output=True,
                           text=True).stdout.split()
    names += [path.name for path in source.glob("*.dist-info")]  # importlib.metadata looks packages up
    for name in names:
        if (source / name).is_dir():
            # With the compiled bytecode: the sandbox shows the venv read-only, so nothing could be cached there.
            shutil.copytree(source / name, site / name, copy_function=os.link)
        else:
            os.link(source / name, site / name)
    (root / "server").mkdir()
    shutil.copy(SERVER, root / "server" / SERVER.name)
    return venv / "bin" / "python"


def stdio_server(python: Path, **fields) -> dict:
    """A stdio server entry running the test server with `python` from its own directory."""
    return {"command": str(python), "args": [SERVER.name], "cwd": str(python.parent.parent.parent / "server"),
            **fields}


@pytest.fixture
def http_server(tmp_path):
    """The test server over Streamable HTTP: (url, record directory, the process)."""
    port = free_port()
    record = tmp_path / "http-record"
    record.mkdir()
    process = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)], env={**os.environ, "RECORD_DIR": str(record)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, 30, what="the MCP HTTP server")
        assert process.poll() is None, "the MCP HTTP server exited"
        yield f"http://127.0.0.1:{port}/mcp", record, process
    finally:
        if process.poll() is None:
            stop_process(process)


@pytest.fixture
def mcp_config(settings, tmp_path):
    """Write a HARNESS_MCP_CONFIG file with these servers and point the settings at it."""

    def write(servers: dict) -> Path:
        path = tmp_path / "mcp.json"
        path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
        settings.HARNESS_MCP_CONFIG = str(path)
        return path

    return write
