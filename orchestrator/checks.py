"""System checks: `manage.py check` (and every command that runs checks, `serve` and `runworker` included)
refuses a model configuration or an MCP server configuration (HARNESS_MCP_CONFIG) it cannot use, and warns when commands cannot run sandboxed, in plain words,
before any run meets either."""

from __future__ import annotations

from django.core.checks import Error, Warning, register

from .mcp.config import config_problem
from .providers.catalog import configuration_problems
from .sandbox import sandbox_state


@register("harness")
def check_models(app_configs=None, **kwargs) -> list[Error]:
    return [
        Error(problem, hint="See HARNESS_MODEL / HARNESS_MODELS in README.md.", id="harness.E001")
        for problem in configuration_problems()
    ]


# The sandbox's mode → (check id, message, hint).
_SANDBOX_WARNINGS = {
    "refused": (
        "harness.W001", "The shell tool is refused on this server: {reason}.",
        "Install bubblewrap (see docs/deploy.md), or set HARNESS_UNSAFE_TOOLS=true to run commands without a "
        "sandbox.",
    ),
    "unsafe": (
        "harness.W002", "Commands run WITHOUT a sandbox (HARNESS_UNSAFE_TOOLS=true): {reason}.",
        "Any user's approved command can read every file, secret and session of this server. Install "
        "bubblewrap (see docs/deploy.md) and unset HARNESS_UNSAFE_TOOLS.",
    ),
}


@register("harness")
def check_sandbox(app_configs=None, **kwargs) -> list[Warning]:
    state = sandbox_state()
    if state.mode not in _SANDBOX_WARNINGS:
        return []
    check_id, message, hint = _SANDBOX_WARNINGS[state.mode]
    return [Warning(message.format(reason=state.reason), hint=hint, id=check_id)]


@register("harness")
def check_mcp(app_configs=None, **kwargs) -> list[Error]:
    problem = config_problem()
    if problem is None:
        return []
    return [Error(problem, hint="See HARNESS_MCP_CONFIG in docs/deploy.md.", id="harness.E002")]
