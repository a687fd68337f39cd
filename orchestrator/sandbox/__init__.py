"""The sandbox: every process an agent's tool starts runs here, and only here.

`policy` decides what a sandboxed process may see and use (the bubblewrap command line, the environment,
the resource limits) and whether bubblewrap can run on this machine at all; `process` starts a command
under that policy, kills its whole process tree, and reads its output with a cap. Tools start processes
through this package only, never with `subprocess` or `asyncio.create_subprocess_*` directly.
"""

from .policy import WORKDIR, SandboxState, installation_paths, sandbox_state, sandbox_uid, workspace_prepare
from .process import (
    CappedOutput, CommandResult, CommandTimeout, Placement, SandboxUnavailable, Sandboxed, command_run, read_capped,
    sandbox_start,
)

__all__ = [
    "CappedOutput",
    "CommandResult",
    "CommandTimeout",
    "Placement",
    "SandboxUnavailable",
    "WORKDIR",
    "SandboxState",
    "Sandboxed",
    "command_run",
    "installation_paths",
    "read_capped",
    "sandbox_start",
    "sandbox_state",
    "sandbox_uid",
    "workspace_prepare",
]
