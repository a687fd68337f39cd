"""Whether bubblewrap can run is found out by running it, once per configuration, and said plainly: by
`manage.py check` (a warning either way it cannot), `/healthz`, and the shell tool's refusal."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from django.core import checks

from orchestrator.sandbox import sandbox_state, sandbox_uid
from orchestrator.sandbox.policy import Limits, bwrap_argv


def sandbox_warnings() -> list[checks.CheckMessage]:
    return [message for message in checks.run_checks() if message.id.startswith("harness.W")]


def test_no_warning_when_commands_run_sandboxed():
    assert sandbox_state().mode == "bubblewrap"
    assert sandbox_warnings() == []


def test_check_warns_when_commands_are_refused(settings):
    settings.HARNESS_BWRAP = "/nonexistent/bwrap"
    [warning] = sandbox_warnings()
    assert warning.id == "harness.W001" and warning.level == checks.WARNING
    assert warning.msg == ("The shell tool is refused on this server: bubblewrap (/nonexistent/bwrap) is not "
                           "installed (Debian: apt-get install bubblewrap).")


def test_check_warns_when_commands_run_unsafe(settings):
    settings.HARNESS_BWRAP = "/nonexistent/bwrap"
    settings.HARNESS_UNSAFE_TOOLS = True
    [warning] = sandbox_warnings()
    assert warning.id == "harness.W002" and "WITHOUT a sandbox" in warning.msg
    assert "can read every file" in warning.hint


def test_unsafe_without_need_is_ignored(settings):
    """HARNESS_UNSAFE_TOOLS only matters where bubblewrap cannot run: with it, commands stay sandboxed."""
    settings.HARNESS_UNSAFE_TOOLS = True
    assert sandbox_state().mode == "bubblewrap" and sandbox_warnings() == []


def test_a_workspace_root_the_sandbox_user_cannot_reach_is_explained(settings):
    """A server running as root runs commands as HARNESS_SANDBOX_UID, which must reach the workspace root."""
    assert os.geteuid() == 0 and sandbox_uid() == (65534, 65534)  # the suite runs as root, as CI does
    private = Path(tempfile.mkdtemp(prefix="harness-private-"))  # 0700, root's
    try:
        settings.HARNESS_WORKSPACE_ROOT = private / "workspaces"
        state = sandbox_state()
        assert state.mode == "refused"
        assert "Permission denied" in state.reason and "uid 65534" in state.reason
        assert "HARNESS_WORKSPACE_ROOT" in state.reason
        private.chmod(0o711)  # reachable now (another root, so the probe runs afresh)
        settings.HARNESS_WORKSPACE_ROOT = private / "other-workspaces"
        assert sandbox_state().mode == "bubblewrap"
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_server_directories_inside_system_directories_are_hidden(settings):
    """Installed under /usr (say /usr/local/lib/harness), the project would be visible through the
    read-only /usr: it is covered by an empty tmpfs instead."""
    settings.BASE_DIR = Path("/usr/local/lib/harness")
    argv = bwrap_argv("bwrap", workspace=Path("/srv/ws/s"), info_fd=None, limits=Limits.from_settings())
    assert argv[argv.index("/usr/local/lib/harness") - 1] == "--tmpfs"
    assert argv.index("/usr/local/lib/harness") > argv.index("/usr")  # mounted over the /usr bind


def test_a_commands_installation_is_what_the_sandbox_shows_of_it(tmp_path):
    from orchestrator.sandbox import installation_paths

    assert installation_paths("/usr/bin/env") == ("/usr/bin/env", [])
    assert installation_paths("sh")[1] == []  # found on the sandbox's PATH, a system program
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\n")
    (venv / "bin" / "python").symlink_to(base / "bin" / "python3")
    assert installation_paths(str(venv / "bin" / "python")) == (str(venv / "bin" / "python"), [base, venv])
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "serve.sh").write_text("")
    assert installation_paths(str(tmp_path / "tools" / "serve.sh"))[1] == [tmp_path / "tools"]
