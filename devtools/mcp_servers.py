"""Real MCP servers for the tests and benchmarks (`devtools/mcp_test_server.py`, written with the official SDK):

- `sandbox_python()`: a virtualenv the sandbox's user can read, made from the system's Python 3.11 with the
  server's packages hard-linked from the project's .venv (whose own interpreter lives under a /root the
  sandbox's user cannot traverse on this machine); its directory `server/` holds the server script, and a
  server configured with that venv's `bin/python` (`stdio_server`) runs in a session's sandbox with the venv
  shown read-only. The server records into the session's workspace (`/workspace` in the sandbox).
- `HttpMcpServer`: the same server over Streamable HTTP on 127.0.0.1, in a subprocess; it records into a
  directory of its own.
- `write_config`: a HARNESS_MCP_CONFIG file.

The server's records: `started-<tag>` when a slow tool begins, `cancelled-<tag>` when its handler is cancelled,
`finished-<tag>` when it completes; each holds "<pid> <CLOCK_MONOTONIC ns> <wall clock ns>" (CLOCK_MONOTONIC
is one clock for every process of the machine, the sandbox's included), read by `record_times`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .process import stop_process
from .servers import free_port, port_open, sandbox_reachable_dir
from .waiting import wait_for

SERVER = Path(__file__).with_name("mcp_test_server.py")
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


class NoSystemPython(RuntimeError):
    """The system's Python 3.11, which a sandbox-readable virtualenv is made from, is not installed."""


def _purelib(python: str | Path) -> Path:
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())


def sandbox_python() -> Path:
    """`bin/python` of a new sandbox-readable virtualenv that can run the server (removed at exit); the
    server script is in `<venv>/../server/`. NoSystemPython without SYSTEM_PYTHON."""
    if not Path(SYSTEM_PYTHON).exists():
        raise NoSystemPython(f"{SYSTEM_PYTHON} is needed for a virtualenv the sandbox's user can read")
    root = sandbox_reachable_dir("harness-mcp-venv-")
    root.chmod(0o755)
    venv = root / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site, source = _purelib(venv / "bin/python"), _purelib(sys.executable)
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
    """A stdio server entry of HARNESS_MCP_CONFIG running the server with `python` (from `sandbox_python`)."""
    return {"command": str(python), "args": [SERVER.name], "cwd": str(python.parent.parent.parent / "server"),
            **fields}


def write_config(path: Path, servers: dict) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path


class HttpMcpServer:
    """The server over Streamable HTTP on 127.0.0.1 (a subprocess), recording into `record`; a context manager
    (started on entry, stopped on exit). `url` is its MCP endpoint."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen | None = None

    def start(self) -> HttpMcpServer:
        self.record.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, str(SERVER), "http", str(self.port)],
                                        env={**os.environ, "RECORD_DIR": str(self.record)},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port) or self.process.poll() is not None, 30, what="the MCP HTTP server")
        if self.process.poll() is not None:
            raise RuntimeError(f"the MCP HTTP server exited ({self.process.returncode})")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)

    def __enter__(self) -> HttpMcpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def record_times(path: Path) -> tuple[int, int] | None:
    """(CLOCK_MONOTONIC ns, wall clock ns) written in a record file, or None while it is not (fully) written."""
    try:
        fields = path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    return (int(fields[1]), int(fields[2])) if len(fields) == 3 else None
