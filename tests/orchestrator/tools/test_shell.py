"""The shell tool: runs in the sandbox's workspace, reports the exit code, caps its output, times out, and
leaves no process behind when it is cancelled or times out — sandboxed (bubblewrap) and, where an
administrator allows it, unsafe (unconfined, killed by process group). Without a sandbox and without that
permission it refuses to run anything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.tools.builtin.shell import shell
from orchestrator.tools.registry import ToolContext, ToolError
from devtools.processes import live_processes, marker, wait_no_live_processes, wait_sleeping


@pytest.fixture
def workspace(settings) -> Path:
    return Path(settings.HARNESS_WORKSPACE_ROOT) / "session"


@pytest.fixture
def context(workspace):
    return ToolContext(run_id="r", session_id="s", workspace=workspace)


def without_bubblewrap(settings, *, unsafe: bool) -> None:
    settings.HARNESS_BWRAP = "/nonexistent/bwrap"
    settings.HARNESS_UNSAFE_TOOLS = unsafe


@pytest.fixture(params=["bubblewrap", "unsafe"])
def mode(request, settings) -> str:
    if request.param == "unsafe":
        without_bubblewrap(settings, unsafe=True)
    return request.param


async def test_runs_in_the_workspace(context, workspace):
    assert not workspace.exists()
    assert await shell.run({"command": "pwd; echo made-by-shell > made.txt"}, context) == "exit code 0\n/workspace\n"
    assert (workspace / "made.txt").read_text(encoding="utf-8") == "made-by-shell\n"


async def test_unsafe_mode_runs_in_the_real_workspace_directory(settings, context, workspace):
    without_bubblewrap(settings, unsafe=True)
    assert await shell.run({"command": "pwd -P"}, context) == f"exit code 0\n{workspace.resolve()}\n"


async def test_returns_exit_code_and_output(mode, context):
    assert await shell.run({"command": "echo out; echo err >&2; exit 3"}, context) == "exit code 3\nout\nerr\n"
    assert await shell.run({"command": "true"}, context) == "exit code 0\n"
    assert (await shell.run({"command": "false"}, context)).startswith("exit code 1\n")


async def test_stdin_is_empty(mode, context):
    # stdin is /dev/null: a command reading it gets EOF at once instead of hanging.
    assert await shell.run({"command": "cat; echo done"}, context) == "exit code 0\ndone\n"


async def test_output_past_the_limit_is_counted_not_kept(mode, context, settings):
    settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES = 1000
    result = await shell.run({"command": "head -c 5100 /dev/zero | tr '\\0' a"}, context)
    assert result == "exit code 0\n" + "a" * 1000 + "\n… (truncated: 4100 more bytes)"


async def test_times_out_and_kills_the_whole_tree(mode, context, settings):
    settings.HARNESS_SHELL_TIMEOUT_SECONDS = 1
    tag = marker()
    task = asyncio.ensure_future(shell.run({"command": f"sleep {tag} & sleep {tag}; wait"}, context))
    await wait_sleeping(tag)  # it could outlive the call: it is running, with 30 s to go
    with pytest.raises(ToolError) as caught:
        await task
    assert str(caught.value) == "timed out after 1 s"
    await assert_tree_gone(mode, tag)


async def test_cancelling_kills_the_whole_tree(mode, context):
    tag = marker()
    task = asyncio.ensure_future(shell.run({"command": f"sleep {tag} & sleep {tag}; wait"}, context))
    await wait_sleeping(tag)
    assert len(live_processes(tag)) >= 3 and not task.done()  # the shell and both sleeps (and bubblewrap)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_tree_gone(mode, tag)


async def assert_tree_gone(mode: str, tag: str) -> None:
    if mode == "bubblewrap":
        # The tool returns only once the sandbox's PID namespace is empty: nothing is left, not even a
        # zombie, the moment it returns.
        assert live_processes(tag) == []
    else:
        # Unconfined, the orphaned background sleep is reparented to pid 1; SIGKILL reaches it with the
        # process group, but it dies on its own schedule.
        await wait_no_live_processes(tag)


async def test_background_processes_end_with_the_command(context):
    """In the sandbox a command's leftovers die with it (its PID namespace ends); the call returns at once."""
    tag = marker()
    result = await shell.run({"command": f"sleep {tag} & echo started"}, context)
    assert result == "exit code 0\nstarted\n"
    assert live_processes(tag) == []


async def test_refused_without_a_sandbox(settings, context, workspace):
    assert await shell.run({"command": "echo runs"}, context) == "exit code 0\nruns\n"  # it could run
    without_bubblewrap(settings, unsafe=False)
    with pytest.raises(ToolError) as caught:
        await shell.run({"command": "echo runs > ran.txt"}, context)
    assert str(caught.value) == (
        "commands are disabled on this server: they run only in a sandbox, and bubblewrap "
        "(/nonexistent/bwrap) is not installed (Debian: apt-get install bubblewrap) (an administrator can "
        "allow unsandboxed commands with HARNESS_UNSAFE_TOOLS=true)"
    )
    assert not (workspace / "ran.txt").exists()


def test_policies():
    assert shell.approval == "ask"
    assert shell.cancellation == "cancellable"
    assert shell.idempotent is False
