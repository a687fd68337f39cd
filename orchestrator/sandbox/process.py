"""Start a command in the sandbox, kill its whole tree, and read its output with a cap.

A sandboxed command is `bwrap … -- prlimit … -- COMMAND`. bubblewrap reports the host pid of the PID
namespace's init (`--info-fd`); killing that init makes the kernel kill every process in the namespace, and
bubblewrap itself exits only once its init has been reaped, i.e. once nothing of the command is left. So
`kill()` returns when the tree is gone, background children (`sleep 30 &`) included.

Without bubblewrap and with HARNESS_UNSAFE_TOOLS=true, commands run unconfined (same environment and
limits, no namespaces) in a process group of their own, which is what a kill then kills.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from ..aio import complete_despite_cancel
from .policy import WORKDIR, Limits, bwrap_argv, bwrap_path, sandbox_env, sandbox_state

# A pipe of 1 MiB (Linux's default maximum for an unprivileged process) lets a chatty command run ahead of
# our reads; reads take at most this much at a time.
PIPE_BYTES = 1 << 20
# Once the kept output is full, the rest is read (and counted) at most once per this interval: a command
# like `yes` then waits on a full pipe instead of keeping the event loop busy discarding its output.
DISCARD_INTERVAL_SECONDS = 0.01
INIT_PID_WAIT_SECONDS = 5.0
EXIT_AFTER_KILL_SECONDS = 2.0


class SandboxUnavailable(Exception):
    """Commands cannot run: no sandbox on this server (and unsafe tools not allowed), or it did not start."""


@dataclass
class Sandboxed:
    """A started command. `process` is bubblewrap (or, unsafe, the command itself)."""

    process: asyncio.subprocess.Process
    # A pidfd of the sandbox's PID-namespace init (signalled through it, so never a recycled pid); None when
    # unsafe, or when the init was already gone by the time bubblewrap told us its pid.
    init_pidfd: int | None
    process_group: bool = False  # unsafe: the command leads a process group of its own

    async def kill(self) -> None:
        """Kill everything the command started and return once it is all gone.

        The kill completes even if the caller is cancelled meanwhile (a stop repeats its cancellation until
        the work ends); the cancellation is re-raised afterwards.
        """
        # The signal goes out before the first await: whatever happens next, the tree is dying.
        if self.init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif self.process.returncode is None:
            try:
                if self.process_group:
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cancelled = await complete_despite_cancel(asyncio.ensure_future(self._reaped()))
        self.release()
        if cancelled:
            raise asyncio.CancelledError

    def release(self) -> None:
        """Close the init's pidfd (once the sandbox has ended; kill() does it itself)."""
        if self.init_pidfd is not None:
            os.close(self.init_pidfd)
            self.init_pidfd = None

    async def _reaped(self) -> None:
        try:
            await asyncio.wait_for(self.process.wait(), EXIT_AFTER_KILL_SECONDS)
        except TimeoutError:  # bubblewrap did not notice its init's end: it dies, and its init with it
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()


@dataclass
class CappedOutput:
    """A command's output (stdout and stderr interleaved) as far as it has been read: the first `limit`
    bytes kept, the rest only counted."""

    limit: int
    kept: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = max(self.limit - len(self.kept), 0)
        self.kept += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    output: CappedOutput


class CommandTimeout(TimeoutError):
    """The command ran out of time and was killed; `output` is what it had written by then."""

    def __init__(self, output: CappedOutput) -> None:
        super().__init__("timed out")
        self.output = output


@dataclass(frozen=True)
class Placement:
    """Where a long-lived process (an MCP stdio server) runs beyond the defaults: paths shown read-only at
    their own place (its installation, its configured working directory), that directory (else the
    workspace), the network (None: HARNESS_SANDBOX_NETWORK), and its whole environment (None: the
    sandbox's, `sandbox_env`)."""

    read_only: tuple[Path, ...] = ()
    cwd: str | None = None
    network: bool | None = None
    environment: dict[str, str] | None = None
    long_lived: bool = False  # no CPU-time or address-space limit (Limits.prlimit_argv)


async def sandbox_start(
    argv: Sequence[str], *, workspace: Path, env: dict[str, str] | None = None,
    stdin: int | None = asyncio.subprocess.DEVNULL, stdout: int | None = None, stderr: int | None = None,
    placement: Placement | None = None,
) -> Sandboxed:
    """Start `argv` in `workspace` under the sandbox (raises SandboxUnavailable when commands cannot run).

    A cancellation while the sandbox starts lets it finish starting, kills it, then goes on: a command
    killed half-started could leave its PID namespace's init orphaned and running.
    """
    spawn = asyncio.ensure_future(_spawn(argv, workspace=workspace, env=env or {}, stdin=stdin, stdout=stdout,
                                         stderr=stderr, placement=placement or Placement()))
    cancelled = await complete_despite_cancel(spawn)
    sandboxed = spawn.result()
    if cancelled:
        await sandboxed.kill()
        raise asyncio.CancelledError
    return sandboxed


async def _spawn(argv: Sequence[str], *, workspace: Path, env: dict[str, str], stdin: int | None,
                 stdout: int | None, stderr: int | None, placement: Placement) -> Sandboxed:
    state = await asyncio.to_thread(sandbox_state)
    if state.mode == "refused":
        raise SandboxUnavailable(state.refusal)
    limits = Limits.from_settings()
    if state.mode == "unsafe":
        environment = (sandbox_env(home=str(workspace), extra=env) if placement.environment is None
                       else {**placement.environment, "HOME": str(workspace)})
        process = await asyncio.create_subprocess_exec(
            *limits.prlimit_argv(long_lived=placement.long_lived), *argv, cwd=placement.cwd or workspace, env=environment,
            stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True,
        )
        return Sandboxed(process=process, init_pidfd=None, process_group=True)
    info_read, info_write = os.pipe()
    try:
        try:
            process = await asyncio.create_subprocess_exec(
                *bwrap_argv(bwrap_path() or settings.HARNESS_BWRAP, workspace=workspace, info_fd=info_write,
                            limits=limits, read_only=placement.read_only, cwd=placement.cwd,
                            network=placement.network),
                *limits.prlimit_argv(long_lived=placement.long_lived), *argv,
                env=placement.environment or sandbox_env(home=WORKDIR, extra=env), stdin=stdin, stdout=stdout,
                stderr=stderr,
                pass_fds=(info_write,),
            )
        finally:
            os.close(info_write)
        try:
            info = await asyncio.wait_for(_read_to_end(info_read), INIT_PID_WAIT_SECONDS)
        except TimeoutError:
            await Sandboxed(process=process, init_pidfd=None).kill()
            raise SandboxUnavailable(f"the sandbox did not start within {INIT_PID_WAIT_SECONDS:g} s") from None
    finally:
        os.close(info_read)
    # No info: bubblewrap failed and is exiting. Otherwise the init has just been started (a pid is not
    # recycled within milliseconds); if it has already ended, there is nothing left to kill.
    init_pidfd = None
    if info:
        try:
            init_pidfd = os.pidfd_open(json.loads(info)["child-pid"])
        except ProcessLookupError:
            pass
    return Sandboxed(process=process, init_pidfd=init_pidfd)


async def command_run(argv: Sequence[str], *, workspace: Path, timeout: float, output_limit: int) -> CommandResult:
    """Run a command to its end with its output captured (capped); killed on timeout or cancellation.

    Raises CommandTimeout after `timeout` seconds, with the command's whole tree gone.
    """
    output = CappedOutput(limit=output_limit)
    read_fd, write_fd = os.pipe()
    try:
        try:
            fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # a lower pipe-max-size: the default pipe works, only with more wake-ups
            pass
        try:
            sandboxed = await sandbox_start(argv, workspace=workspace, stdout=write_fd, stderr=write_fd)
        finally:
            os.close(write_fd)
        try:
            async with asyncio.timeout(timeout):
                await read_capped(read_fd, output)
                exit_code = await sandboxed.process.wait()
        except TimeoutError:
            await sandboxed.kill()
            raise CommandTimeout(output) from None
        except BaseException:  # cancelled (a stop): the whole tree goes
            await sandboxed.kill()
            raise
        finally:
            sandboxed.release()
    finally:
        os.close(read_fd)
    return CommandResult(exit_code=exit_code, output=output)


async def read_capped(fd: int, output: CappedOutput) -> None:
    """Read a pipe to its end into `output` without blocking the event loop.

    Memory stays within the output's limit plus one read, however much the writer writes.
    """
    async with aclosing(_chunks(fd, PIPE_BYTES)) as chunks:
        async for chunk in chunks:
            output.add(chunk)
            if output.dropped:
                await asyncio.sleep(DISCARD_INTERVAL_SECONDS)


async def _read_to_end(fd: int) -> bytes:
    async with aclosing(_chunks(fd, 4096)) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def _chunks(fd: int, size: int) -> AsyncIterator[bytes]:
    """The data of a pipe as it arrives, read when the event loop says it is readable, until EOF."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                chunk = os.read(fd, size)
            except BlockingIOError:
                continue
            if not chunk:
                return
            yield chunk
    finally:
        loop.remove_reader(fd)
