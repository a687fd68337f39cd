"""Resource limits inside the sandbox (HARNESS_SANDBOX_*): each test runs the command once with a generous
limit, where it succeeds, and once with a small one, where it stops at the limit and the call still
returns normally (a fork bomb or a disk filler does not take the tool, or the run, down with it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.tools.builtin.shell import shell
from orchestrator.tools.registry import ToolContext, ToolError
from devtools.processes import live_processes, marker


@pytest.fixture
def context(settings) -> ToolContext:
    return ToolContext(run_id="r", session_id="s", workspace=Path(settings.HARNESS_WORKSPACE_ROOT) / "s")


async def run(context: ToolContext, command: str) -> str:
    return await shell.run({"command": command}, context)


async def test_process_count(settings, context):
    tag = marker()
    # 100 background sleeps, each printing its pid with a builtin (a failed fork leaves $! unchanged).
    command = f"for i in $(seq 100); do sleep {tag} & echo \"pid $!\"; done 2>/dev/null"

    async def started() -> int:
        return len({line for line in (await run(context, command)).splitlines() if line.startswith("pid ")})

    settings.HARNESS_SANDBOX_PROCESSES = 1000
    assert await started() == 100
    settings.HARNESS_SANDBOX_PROCESSES = 32
    assert 0 < await started() < 32
    assert live_processes(tag) == []  # and the sleeps that did start ended with the call


async def test_a_fork_bomb_stops_at_the_process_limit(settings, context):
    settings.HARNESS_SANDBOX_PROCESSES = 64
    result = await run(context, "bomb() { bomb | bomb & }; bomb 2>/dev/null; echo still here")
    assert result == "exit code 0\nstill here\n"
    assert await run(context, "echo next call") == "exit code 0\nnext call\n"


async def test_file_size(settings, context):
    command = "dd if=/dev/zero of=big bs=1M count=16 2>/dev/null; wc -c < big"
    assert await run(context, command) == "exit code 0\n16777216\n"
    settings.HARNESS_SANDBOX_FILE_SIZE_BYTES = 4 * 1024 * 1024
    result = await run(context, f"rm big; {command}")
    assert result == "exit code 0\n4194304\n"
    assert (context.workspace / "big").stat().st_size == 4 * 1024 * 1024


async def test_private_tmp_is_bounded_by_the_file_size_limit(settings, context):
    command = "for i in 1 2 3; do dd if=/dev/zero of=/tmp/f$i bs=1M count=3 2>/dev/null; done; du -sk /tmp"
    assert (await run(context, command)).endswith("\n9216\t/tmp\n")  # three files of 3 MiB
    settings.HARNESS_SANDBOX_FILE_SIZE_BYTES = 4 * 1024 * 1024
    assert (await run(context, command)).endswith("\n4096\t/tmp\n")  # full at 4 MiB


async def test_cpu_seconds(settings, context):
    busy = "python3 -c 'while True: pass'"
    settings.HARNESS_SHELL_TIMEOUT_SECONDS = 2
    with pytest.raises(ToolError, match="^timed out after 2 s$"):  # unlimited, it runs until the timeout
        await run(context, busy)
    settings.HARNESS_SHELL_TIMEOUT_SECONDS = 60
    settings.HARNESS_SANDBOX_CPU_SECONDS = 1
    result = await run(context, f"{busy}; echo exit $?")
    assert result.endswith("\nexit 152\n")  # 128 + SIGXCPU: killed at one second of CPU


async def test_address_space(settings, context):
    allocate = "python3 -c 'b = bytearray(512 * 1024 * 1024); print(\"allocated\")'"
    assert await run(context, allocate) == "exit code 0\nallocated\n"
    settings.HARNESS_SANDBOX_MEMORY_BYTES = 256 * 1024 * 1024
    result = await run(context, allocate)
    assert result.startswith("exit code 1\n") and "MemoryError" in result


async def test_a_long_lived_process_has_no_cpu_time_or_address_space_limit(settings):
    """An MCP server lives across runs: a CPU-time limit would add up over its whole life and kill it, and
    runtimes like Node reserve more virtual memory than the per-command limit. It keeps the others."""
    import asyncio

    from orchestrator.sandbox import sandbox_start, workspace_prepare
    from orchestrator.sandbox.process import Placement

    settings.HARNESS_SANDBOX_CPU_SECONDS = 7
    settings.HARNESS_SANDBOX_MEMORY_BYTES = 1_000_000_000
    workspace = workspace_prepare(Path(settings.HARNESS_WORKSPACE_ROOT) / "long-lived")
    limits = {}
    for long_lived in (False, True):
        sandboxed = await sandbox_start(
            ["/bin/bash", "-c", "ulimit -t; ulimit -v; ulimit -u"], workspace=workspace,
            stdout=asyncio.subprocess.PIPE, placement=Placement(long_lived=long_lived),
        )
        out, _ = await sandboxed.process.communicate()
        limits[long_lived] = out.decode().split()
    assert limits[False][:2] == ["7", str(1_000_000_000 // 1024)]  # a command: both limits
    assert limits[True][:2] == ["unlimited", "unlimited"]  # a server: neither
    assert limits[True][2] == limits[False][2] != "unlimited"  # the process count holds for both
