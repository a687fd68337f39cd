"""Shared fixtures: a fresh in-memory channel layer and executor pool per test, users, sessions, an API
token, and the real orchestrator worker (a Channels `Worker` on the `orchestrator` channel) on the test's
event loop. Records in a given state (runs, calls, a run parked on an approval) come from tests/factories.py."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from channels.layers import channel_layers, get_channel_layer
from channels.routing import get_default_application
from django.conf import settings
from django.contrib.auth import get_user_model

from orchestrator.engine import pool as pool_module
from orchestrator.services.sessions import session_create
from orchestrator.services.tokens import api_token_create
from orchestrator.wakeups import ORCHESTRATOR_CHANNEL
from orchestrator.worker import OrchestratorWorker
from devtools.serve import Serve
from devtools.servers import sandbox_reachable_dir

TEST_TOOLS = [
    "tests.tools.side_effect",
    "tests.tools.forbidden",
    "tests.tools.finishing",
]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """Each pytest session gets its own SQLite test file (WAL needs a file, and parallel sessions must not
    share one)."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "harness.sqlite":  # Django's SQLite backend, subclassed (harness/sqlite/)
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    else:
        # Tests use threads (the engine's DB thread, racing services): close connections after each use so
        # none outlives the test database.
        database["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _isolated_harness(settings, tmp_path):
    # Users are created in most tests; the production hasher's deliberate slowness is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.HARNESS_WORKSPACE_ROOT = sandbox_reachable_dir("harness-workspaces-")
    settings.HARNESS_EXTRA_TOOLS = TEST_TOOLS
    # One user drives every run of a test (fifty at once, some): the per-user run limits have tests of their own.
    settings.HARNESS_MAX_LIVE_RUNS_PER_USER = settings.HARNESS_MAX_RUN_STARTS_PER_MINUTE = 1_000_000
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "harness.layers.AmortisedInMemoryChannelLayer"}}
    # The layer and the pool hold asyncio objects bound to one event loop; every test has its own loop.
    channel_layers.backends = {}
    pool_module.reset_pool()
    yield
    channel_layers.backends = {}
    pool_module.reset_pool()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-password-1")


@pytest.fixture
def session(user):
    return session_create(owner=user, title="test session")


@pytest.fixture
def token(user) -> str:
    """A bearer token of `user` (alice) for the HTTP and WebSocket APIs."""
    return api_token_create(user=user)


@asynccontextmanager
async def running_worker():
    """The real worker (the project's ASGI application's `orchestrator` channel) on this test's loop."""
    layer = get_channel_layer()
    server = OrchestratorWorker(application=get_default_application(), channels=[ORCHESTRATOR_CHANNEL],
                                channel_layer=layer)
    listener = asyncio.ensure_future(server.handle())
    pool = pool_module.get_pool()
    deadline = asyncio.get_running_loop().time() + 10
    while pool_module.local_pool() is None:  # booted, as `serve`'s worker is before it takes any command
        assert asyncio.get_running_loop().time() < deadline, "the worker did not boot"
        await asyncio.sleep(0.005)
    try:
        yield pool
    finally:
        await pool.shutdown()
        listener.cancel()
        instances = [details["future"] for details in server.application_instances.values()]
        for future in instances:
            future.cancel()
        await asyncio.gather(listener, *instances, return_exceptions=True)


@pytest_asyncio.fixture
async def worker():
    async with running_worker() as pool:
        yield pool


@pytest.fixture
def make_user(django_user_model):
    def make(username: str):
        return get_user_model().objects.create_user(username=username, password=f"{username}-password-1")

    return make


@pytest.fixture
def serve_server(tmp_path):
    """`manage.py serve` (real Daphne, the worker inside) on a fresh, migrated SQLite file: not started yet, so a
    test can create users and tokens first (`create_token`, `login_cookie`), then `start()`. Stopped at the end."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}",
           "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-serve-ws-"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    server = Serve(env, tmp_path / "serve.log")
    server.migrate()
    try:
        yield server
    finally:
        server.stop()
