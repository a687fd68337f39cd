"""What a sandboxed process may see and use, in one place.

Under bubblewrap (`bwrap`) a command sees:

- its session's workspace at `/workspace`, the only writable path, its working directory and `$HOME`;
- the system directories (`/usr` and the `/bin`, `/lib` … links into it) and an allow-list of `/etc`,
  read-only; a private `/tmp` (a tmpfs as large as the file-size limit), `/proc` of its own PID namespace
  and a minimal `/dev`;
- nothing else: not other workspaces, not `HARNESS_VAR_DIR` or the database, not the project's source or
  its virtualenv (hidden under an empty tmpfs should one of them lie inside a system directory);
- a fresh PID, IPC, UTS, cgroup and user namespace; no network unless `HARNESS_SANDBOX_NETWORK=true`;
- an environment of only `PATH`, `HOME`, `LANG`, `TERM` and what the tool passes;
- resource limits (`prlimit`, set inside the sandbox's user namespace so they count its processes only):
  CPU seconds, address space, processes, file size.

When the server runs as root, the sandbox runs as `HARNESS_SANDBOX_UID` instead (root is exempt from the
process limit), so the workspace root must be reachable by that user; the probe checks it.

What it does not do: limit total disk use (use a filesystem quota on the workspace root), memory actually
used by many processes together (each is capped, their sum is not), or CPU share (use cgroups / systemd's
CPUQuota for that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Literal

from django.conf import settings

WORKDIR = "/workspace"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The top-level directories that are either /usr's merged-usr links or system directories of their own.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What a command needs of /etc to run programs, resolve users, names and certificates — and nothing a
# deployment keeps its own secrets in (an EnvironmentFile under /etc/harness is not on this list).
# Each entry is a mount bubblewrap makes on every start (~0.15 ms each): keep the list short.
ETC_ALLOWED = (
    "alternatives", "ca-certificates", "group", "hosts", "ld.so.cache", "localtime", "nsswitch.conf",
    "passwd", "protocols", "resolv.conf", "services", "ssl",
)
PROBE_TIMEOUT_SECONDS = 10
PROBE_TTL_SECONDS = 60

Mode = Literal["bubblewrap", "unsafe", "refused"]


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    address_space_bytes: int
    processes: int
    file_size_bytes: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            cpu_seconds=int(settings.HARNESS_SANDBOX_CPU_SECONDS),
            address_space_bytes=int(settings.HARNESS_SANDBOX_MEMORY_BYTES),
            processes=int(settings.HARNESS_SANDBOX_PROCESSES),
            file_size_bytes=int(settings.HARNESS_SANDBOX_FILE_SIZE_BYTES),
        )

    def prlimit_argv(self, *, long_lived: bool = False) -> list[str]:
        """util-linux's `prlimit` sets the limits on itself, then execs the command. CPU time: SIGXCPU at the
        limit (a program may catch it to clean up), SIGKILL one second later. A long-lived process (an MCP
        server) gets neither the CPU-time limit (it would add up over the server's whole life, across runs)
        nor the address-space one (runtimes such as Node reserve far more virtual memory than they use)."""
        per_command = [] if long_lived else [f"--cpu={self.cpu_seconds}:{self.cpu_seconds + 1}",
                                             f"--as={self.address_space_bytes}"]
        return ["prlimit", *per_command, f"--nproc={self.processes}", f"--fsize={self.file_size_bytes}", "--"]


@dataclass(frozen=True)
class SandboxState:
    """How commands run on this server: `bubblewrap` (sandboxed), `unsafe` (bubblewrap cannot run and
    HARNESS_UNSAFE_TOOLS=true: commands run unconfined) or `refused` (bubblewrap cannot run: commands are
    refused). `reason` says why bubblewrap cannot run."""

    mode: Mode
    reason: str = ""

    @property
    def refusal(self) -> str:
        return (f"commands are disabled on this server: they run only in a sandbox, and {self.reason} "
                "(an administrator can allow unsandboxed commands with HARNESS_UNSAFE_TOOLS=true)")

    def as_health(self) -> dict:
        body: dict = {"mode": self.mode, "network": bool(settings.HARNESS_SANDBOX_NETWORK)}
        if self.reason:
            body["reason"] = self.reason
        return body


def sandbox_uid() -> tuple[int, int] | None:
    """The (uid, gid) sandboxed commands run as when the server is root; None when it is not."""
    if os.geteuid() != 0:
        return None
    uid = int(settings.HARNESS_SANDBOX_UID)
    return uid, uid


def bwrap_path() -> str | None:
    return shutil.which(settings.HARNESS_BWRAP)


def hidden_paths() -> list[Path]:
    """The server's own files: never visible to a sandboxed command."""
    paths = [settings.BASE_DIR, settings.VAR_DIR, Path(settings.HARNESS_WORKSPACE_ROOT)]
    for database in settings.DATABASES.values():
        if "sqlite" in database["ENGINE"] and database.get("NAME"):
            paths.append(Path(database["NAME"]).parent)
    if sys.prefix != sys.base_prefix:  # a virtualenv; a system interpreter's prefix is /usr itself
        paths.append(Path(sys.prefix))
    return [Path(os.path.realpath(path)) for path in paths]


def bwrap_argv(bwrap: str, *, workspace: Path, info_fd: int | None, limits: Limits, read_only: Sequence[Path] = (),
               cwd: str | None = None, network: bool | None = None) -> list[str]:
    """The bubblewrap command line up to (not including) the command itself.

    bubblewrap is started with the sandbox's environment (`sandbox_env`) rather than given `--clearenv`:
    the sandbox's PID 1 is bubblewrap itself, and its /proc/1/environ must hold no secret either. A root
    server drops to the sandbox's user with util-linux's `setpriv` in front of bubblewrap, rather than
    with subprocess's `user=`, which makes Python fork (not vfork) the whole server: ~5 ms per command.
    """
    sandbox_user = sandbox_uid()
    argv = [] if sandbox_user is None else [
        "setpriv", f"--reuid={sandbox_user[0]}", f"--regid={sandbox_user[1]}", "--clear-groups", "--",
    ]
    argv += [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    if settings.HARNESS_SANDBOX_NETWORK if network is None else network:
        argv.append("--share-net")
    argv += ["--ro-bind", "/usr", "/usr"]
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            argv += ["--symlink", os.readlink(directory), directory]
        else:
            argv += ["--ro-bind-try", directory, directory]
    for name in ETC_ALLOWED:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    bound = ["/usr", *SYSTEM_DIRS, "/etc"]
    for path in hidden_paths():
        if any(path.is_relative_to(root) for root in bound):
            argv += ["--tmpfs", str(path)]
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(limits.file_size_bytes), "--tmpfs", "/tmp",
        "--bind", str(workspace), WORKDIR,
    ]
    for path in read_only:  # a long-lived server's installation and working directory (MCP stdio servers)
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--chdir", cwd or WORKDIR]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv.append("--")
    return argv


def sandbox_env(*, home: str, extra: dict[str, str]) -> dict[str, str]:
    """The whole environment of a sandboxed command: the allow-list, then what the tool gave it."""
    return {
        "PATH": PATH,
        "HOME": home,
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "TERM": os.environ.get("TERM") or "dumb",
        **extra,
    }


def installation_paths(command: str) -> tuple[str, list[Path]]:
    """Where `command` lives (resolved on the sandbox's PATH when it is a bare name) and what of its installation
    a sandbox must show read-only besides the system directories: for an interpreter in a virtualenv, that
    virtualenv and the interpreter it was made from; otherwise the program's prefix (the parent of a `bin`
    directory) or its directory. Nothing for a program under the system directories."""
    resolved = command if os.path.isabs(command) else (shutil.which(command, path=PATH) or command)
    paths: list[Path] = []
    program = Path(os.path.abspath(resolved))
    venv = program.parent.parent
    if program.parent.name == "bin" and (venv / "pyvenv.cfg").is_file():
        paths.append(venv)
        for line in (venv / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                home = Path(value.strip())
                paths.append(home.parent if home.name == "bin" else home)
    real = Path(os.path.realpath(program))
    paths.append(real.parent.parent if real.parent.name == "bin" else real.parent)
    system = [Path("/usr"), *(Path(d) for d in SYSTEM_DIRS), Path("/etc")]
    kept: list[Path] = []
    for path in sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: (len(p.parts), str(p))):
        if path == Path("/") or any(path.is_relative_to(root) for root in [*system, *kept]):
            continue
        kept.append(path)
    return resolved, kept


def workspace_prepare(workspace: Path) -> Path:
    """Create a session's workspace, owned by the user its commands run as."""
    workspace.mkdir(parents=True, exist_ok=True)
    sandbox_user = sandbox_uid()
    if sandbox_user is not None and workspace.stat().st_uid != sandbox_user[0]:  # the root server's workspaces
        os.chown(workspace, *sandbox_user)
    return workspace


_probes: dict[tuple, tuple[float, SandboxState]] = {}


def sandbox_state() -> SandboxState:
    """Whether commands run sandboxed, unsafe or not at all: from a probe per configuration, repeated every
    PROBE_TTL_SECONDS so that installing bubblewrap (or fixing a permission) needs no restart."""
    key = (settings.HARNESS_BWRAP, str(settings.HARNESS_WORKSPACE_ROOT), sandbox_uid(),
           bool(settings.HARNESS_SANDBOX_NETWORK), bool(settings.HARNESS_UNSAFE_TOOLS))
    cached = _probes.get(key)
    if cached is not None and time.monotonic() - cached[0] < PROBE_TTL_SECONDS:
        return cached[1]
    reason = _bwrap_problem(Path(settings.HARNESS_WORKSPACE_ROOT), sandbox_uid())
    if reason is None:
        state = SandboxState("bubblewrap")
    else:
        state = SandboxState("unsafe" if settings.HARNESS_UNSAFE_TOOLS else "refused", reason)
    _probes[key] = (time.monotonic(), state)
    return state


def _bwrap_problem(workspace_root: Path, sandbox_user: tuple[int, int] | None) -> str | None:
    """Run `true` in a sandbox on the workspace root exactly as commands will run; None if it works."""
    bwrap = bwrap_path()
    if bwrap is None:
        return f"bubblewrap ({settings.HARNESS_BWRAP}) is not installed (Debian: apt-get install bubblewrap)"
    if sandbox_user is not None and shutil.which("setpriv") is None:
        return "setpriv (util-linux), which a server running as root needs to drop privileges, is not installed"
    try:
        workspace_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"the workspace root cannot be created: {exc.strerror}"
    argv = bwrap_argv(bwrap, workspace=workspace_root, info_fd=None, limits=Limits.from_settings())
    try:
        probe = subprocess.run(
            [*argv, *Limits.from_settings().prlimit_argv(), "true"], capture_output=True, text=True,
            timeout=PROBE_TIMEOUT_SECONDS, env=sandbox_env(home=WORKDIR, extra={}),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap cannot start: {exc}"
    if probe.returncode == 0:
        return None
    detail = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit code {probe.returncode}"
    if sandbox_user is not None and "Permission denied" in detail:
        detail += (f" (the server runs as root, so commands run as uid {sandbox_user[0]}, which must be able to "
                   f"reach {workspace_root}: set HARNESS_SANDBOX_UID or HARNESS_WORKSPACE_ROOT)")
    return f"bubblewrap cannot run here: {detail}"
