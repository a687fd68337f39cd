"""What an approved `shell` command cannot reach: other sessions' workspaces, the server's files, its
secrets and the network. Every test first runs the same command unsandboxed (a plain subprocess from the
test, in the same directory) and sees it succeed, so none can pass because the command was simply wrong."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection

from orchestrator.tools.builtin.shell import shell
from orchestrator.tools.registry import ToolContext
from devtools.servers import sandbox_reachable_dir

SECRET = "alice-top-secret-7f3a"


@pytest.fixture
def root(settings) -> Path:
    return Path(settings.HARNESS_WORKSPACE_ROOT)


@pytest.fixture
def alice(root) -> Path:
    workspace = root / "alice-session"
    workspace.mkdir()
    (workspace / "secret.txt").write_text(SECRET, encoding="utf-8")
    return workspace


@pytest.fixture
def bob(root) -> Path:
    workspace = root / "bob-session"
    workspace.mkdir()
    return workspace


def unsandboxed(command: str, workspace: Path) -> str:
    """The same command as a plain process of the server's: what the shell tool did before the sandbox."""
    done = subprocess.run(["/bin/sh", "-c", command], cwd=workspace, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


async def sandboxed(command: str, workspace: Path) -> str:
    return await shell.run({"command": command}, ToolContext(run_id="r", session_id="s", workspace=workspace))


@pytest.mark.parametrize(("command", "leak"), [
    ("cat ../alice-session/secret.txt", SECRET),
    ("cat {alice}/secret.txt", SECRET),
    ("ls ..", "alice-session"),
    ("ls {root}", "alice-session"),
])
async def test_another_sessions_workspace_is_out_of_sight(command, leak, root, alice, bob):
    command = command.format(alice=alice, root=root)
    assert leak in unsandboxed(command, bob)  # it could happen
    result = await sandboxed(command, bob)
    assert leak not in result


async def test_a_symlink_planted_in_the_workspace_leads_nowhere(alice, bob):
    os.symlink(alice / "secret.txt", bob / "absolute-link")
    os.symlink(Path("..") / "alice-session" / "secret.txt", bob / "relative-link")
    for link in ("absolute-link", "relative-link"):
        assert SECRET in unsandboxed(f"cat {link}", bob)
        result = await sandboxed(f"cat {link}", bob)
        assert SECRET not in result and result.startswith("exit code 1\n")


@pytest.mark.django_db
async def test_the_servers_own_files_are_out_of_sight(settings, bob):
    var = sandbox_reachable_dir("harness-var-")
    (var / "var-secret.txt").write_text("from var", encoding="utf-8")
    settings.VAR_DIR = var
    targets = {
        var / "var-secret.txt": "from var",
        settings.BASE_DIR / "manage.py": "DJANGO_SETTINGS_MODULE",  # the project's source
        Path(sys.prefix) / "pyvenv.cfg": "home",  # its virtualenv
    }
    if connection.vendor == "sqlite":  # on PostgreSQL the database is not a file of ours
        targets[Path(connection.settings_dict["NAME"])] = "SQLite format 3"
    for path, content in targets.items():
        assert content in unsandboxed(f"cat '{path}'", bob), path
        result = await sandboxed(f"cat '{path}'; ls '{path.parent}'", bob)
        assert content not in result and "No such file or directory" in result, path


async def test_the_environment_holds_none_of_the_servers_secrets(monkeypatch, bob):
    secrets = {
        "SECRET_KEY": "django-insecure-4f9$k2!real-looking-secret-key",
        "DATABASE_URL": "postgres://harness:pg-password-83@db.internal:5432/harness",
        "OPENAI_API_KEY": "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz",
        "ANTHROPIC_API_KEY": "sk-ant-api03-0123456789abcdefghijklmnop",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    command = "env; cat /proc/1/environ"
    leaked = unsandboxed(command, bob)
    assert all(value in leaked for value in secrets.values())
    result = await sandboxed(command, bob)
    assert not any(value in result for value in secrets.values())
    names = {line.split("=", 1)[0] for line in result.splitlines()[1:] if "=" in line}
    assert names <= {"PATH", "HOME", "LANG", "TERM", "PWD"}
    assert "HOME=/workspace" in result


class Listener:
    """A TCP server on 127.0.0.1 standing for the harness's own port: counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            connection.close()
            with self.changed:
                self.accepted += 1
                self.changed.notify_all()

    def wait_accepted(self, count: int, timeout: float = 10.0) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.accepted >= count, timeout)
            return self.accepted

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


async def test_no_network_unless_enabled(settings, listener, bob):
    command = f"bash -c 'echo > /dev/tcp/127.0.0.1/{listener.port}' && echo connected"
    assert "connected" in unsandboxed(command, bob) and listener.wait_accepted(1) == 1
    result = await sandboxed(command, bob)
    # The sandbox has a network namespace of its own: its loopback has nothing listening.
    assert result.startswith("exit code 1\n") and "Connection refused" in result
    settings.HARNESS_SANDBOX_NETWORK = True
    assert await sandboxed(command, bob) == "exit code 0\nconnected\n"
    assert listener.wait_accepted(2) == 2
