"""Throwaway PostgreSQL and Redis servers for tests and benchmarks: started on 127.0.0.1 and a free port,
in a temporary directory, and stopped (and deleted) by whoever started them.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to the `postgres` user.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from .process import stop_process
from .waiting import wait_for


# One user drives every run of a test or benchmark deployment: lift the per-user run limits there.
UNLIMITED_RUNS = {"HARNESS_MAX_LIVE_RUNS_PER_USER": "1000000", "HARNESS_MAX_RUN_STARTS_PER_MINUTE": "1000000"}


def sandbox_reachable_dir(prefix: str) -> Path:
    """A new directory the sandbox's user can reach, removed when this process exits.

    A server running as root runs sandboxed commands as another user (orchestrator/sandbox/policy.py),
    which must be able to traverse to the workspace root; pytest's tmp_path lies in a directory private
    to root.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    atexit.register(shutil.rmtree, path, True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    """Does something accept TCP connections on 127.0.0.1:port?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Until 127.0.0.1:port listens; RuntimeError at once if `process` exits first."""

    def listening() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        return port_open(port)

    wait_for(listening, timeout, what=f"something to listen on 127.0.0.1:{port}")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [*(["runuser", "-u", "postgres", "--"] if self.as_root else []), *args]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        if self.as_root:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        self._options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                         "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self.start_again()
        return self

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (its backends are its children), from postmaster.pid."""
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self._pg_ctl_stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def shut_down(self) -> None:
        """A restart's first half: every connection is cut, the data kept for start_again(). (Fast, not
        immediate: with this throwaway cluster's fsync=off and synchronous_commit=off an immediate stop —
        a crash — loses the last commits, which no deployment's settings would.)"""
        self._pg_ctl_stop("fast")

    def _pg_ctl_stop(self, mode: str) -> None:
        try:
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        except subprocess.CalledProcessError:
            pass

    def terminate_backends(self) -> int:
        """Kills every client connection but this one (`pg_terminate_backend`); how many there were."""
        command = [*(["runuser", "-u", "postgres", "--"] if self.as_root else []), _pg_bin("psql"), "-h", "127.0.0.1",
                   "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-tAc",
                   "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"]
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
        return int(done.stdout.strip())

    def start_again(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", self._options, "-l", str(self.root / "log"), "-w",
                  "start")


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM)

    def restart(self) -> None:
        """Stop and start again on the same port (everything in it is lost: it keeps no data)."""
        self.stop()
        self.start()
