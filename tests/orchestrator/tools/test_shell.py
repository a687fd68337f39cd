"""The shell tool: runs in the workspace, reports the exit code, times out, and leaves no process behind
when it is cancelled or times out (the command's whole process group is killed)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from orchestrator.tools.builtin.shell import MAX_OUTPUT, shell
from orchestrator.tools.registry import ToolContext, ToolError

# A shell that starts a long-lived child, records both pids in the workspace (written to a temporary name
# and renamed, so a pid file that exists is complete), then waits for the child.
SPAWN_AND_WAIT = (
    "sleep 30 & "
    "echo $$ > shell.tmp && mv shell.tmp shell.pid; "
    "echo $! > child.tmp && mv child.tmp child.pid; "
    "wait"
)


@pytest.fixture
def workspace(tmp_path):
    return tmp_path / "ws"


@pytest.fixture
def context(workspace):
    return ToolContext(run_id="r", session_id="s", workspace=workspace)


async def wait_for_file(path: Path, *, timeout: float = 10.0) -> str:
    """Poll for a file to appear (with a deadline) and return its content."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {path.name}")
        await asyncio.sleep(0.01)
    return path.read_text(encoding="utf-8")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/status, or None when the pid is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return None


async def assert_gone(pid: int, *, timeout: float = 5.0) -> None:
    """The process no longer exists (os.kill(pid, 0) raises ProcessLookupError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while is_alive(pid):
        if loop.time() > deadline:
            raise AssertionError(f"process {pid} is still alive (state {process_state(pid)})")
        await asyncio.sleep(0.01)


async def assert_dead(pid: int, *, timeout: float = 5.0) -> None:
    """The process is gone or is a zombie: it has been killed and is no longer running.

    The grandchild (`sleep 30 &`) is not our child: when its shell dies it is reparented to pid 1 (or a
    subreaper), and only that process can reap it. In this container pid 1 is not a classic init; it does reap
    orphans, but only every so often (a zombie was observed to linger for about 2 s), so a killed grandchild may
    briefly still have a pid, in state 'Z'. A zombie runs no code and holds no resources but its pid, so "Z or
    gone" is what "the child was killed" means here; waiting for pid 1 to reap it would make the test depend on
    the container's init.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (state := process_state(pid)) not in (None, "Z"):
        if loop.time() > deadline:
            raise AssertionError(f"process {pid} is still running (state {state})")
        await asyncio.sleep(0.01)


async def test_runs_in_the_workspace(context, workspace):
    assert not workspace.exists()
    result = await shell.run({"command": "pwd -P"}, context)
    assert result == f"exit code 0\n{workspace.resolve()}\n"
    assert workspace.is_dir()


async def test_relative_paths_are_in_the_workspace(context, workspace):
    await shell.run({"command": "echo made-by-shell > made.txt"}, context)
    assert (workspace / "made.txt").read_text(encoding="utf-8") == "made-by-shell\n"


async def test_returns_exit_code_and_output(context):
    assert await shell.run({"command": "echo out; echo err >&2; exit 3"}, context) == "exit code 3\nout\nerr\n"
    assert await shell.run({"command": "true"}, context) == "exit code 0\n"
    assert (await shell.run({"command": "false"}, context)).startswith("exit code 1\n")


async def test_stdin_is_empty(context):
    # stdin is /dev/null: a command reading it gets EOF at once instead of hanging.
    assert await shell.run({"command": "cat; echo done"}, context) == "exit code 0\ndone\n"


async def test_long_output_is_truncated(context):
    result = await shell.run({"command": f"head -c {MAX_OUTPUT + 100} /dev/zero | tr '\\0' a"}, context)
    assert result == "exit code 0\n" + "a" * MAX_OUTPUT + "\n… (100 more bytes)"


async def test_times_out_and_kills_the_command(context, workspace, settings):
    settings.HARNESS_SHELL_TIMEOUT_SECONDS = 0.5
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        await shell.run({"command": SPAWN_AND_WAIT}, context)
    elapsed = time.monotonic() - started
    assert str(caught.value) == "timed out after 0.5 s"
    # The tool waits for the shell it killed: had the kill missed, it would have waited the full 30 s.
    assert elapsed < 10
    shell_pid = int(await wait_for_file(workspace / "shell.pid", timeout=1))
    child_pid = int(await wait_for_file(workspace / "child.pid", timeout=1))
    await assert_gone(shell_pid)
    await assert_dead(child_pid)


async def test_cancelling_kills_the_shell_and_its_children(context, workspace):
    task = asyncio.ensure_future(shell.run({"command": SPAWN_AND_WAIT}, context))
    try:
        child_pid = int(await wait_for_file(workspace / "child.pid"))
        shell_pid = int(await wait_for_file(workspace / "shell.pid"))
        assert is_alive(shell_pid) and process_state(child_pid) not in (None, "Z")
        assert not task.done()
    finally:
        task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert time.monotonic() - started < 5
    # The shell is the tool's own child and is reaped by the tool before the cancellation completes.
    assert not is_alive(shell_pid)
    await assert_gone(shell_pid)
    # The grandchild was in the same process group and got SIGKILL too.
    await assert_dead(child_pid)


def test_policies():
    assert shell.approval == "ask"
    assert shell.cancellation == "cancellable"
    assert shell.idempotent is False
