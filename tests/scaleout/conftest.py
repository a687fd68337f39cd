"""A real scaled-out deployment on this machine (devtools.cluster): PostgreSQL + Redis (throwaway), 2 Daphne
web processes and 2 `manage.py runworker orchestrator` processes, all on 127.0.0.1, started and stopped by
these fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools.cluster import Cluster
from devtools.process import manage
from devtools.servers import UNLIMITED_RUNS, PostgresServer, RedisServer, sandbox_reachable_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def backing_services():
    postgres = PostgresServer().start()
    redis = RedisServer().start()
    try:
        yield postgres, redis
    finally:
        redis.stop()
        postgres.stop()


@pytest.fixture(scope="module")
def cluster(backing_services, tmp_path_factory):
    postgres, redis = backing_services
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "harness.settings",
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "HARNESS_WORKSPACE_ROOT": str(sandbox_reachable_dir("harness-scaleout-workspaces-")),
        "HARNESS_EXTRA_TOOLS": "tests.tools.side_effect",
        "HARNESS_LEASE_TTL_SECONDS": "2",
        **UNLIMITED_RUNS,
        "HARNESS_RECOVERY_INTERVAL_SECONDS": "0.25",
        "PYTHONPATH": str(ROOT),
    }
    manage(env, "migrate", "--noinput", timeout=120)
    token = manage(env, "create_api_token", "scale", timeout=60).strip()
    deployment = Cluster(env=env, database_url=postgres.url, redis=redis, token=token,
                         log_dir=tmp_path_factory.mktemp("cluster-logs"))
    try:
        deployment.start_web("a")
        deployment.start_web("b")
        deployment.start_worker()
        deployment.start_worker()
        yield deployment
    finally:
        deployment.stop_all()
