"""`/healthz`: database, channel layer and live workers, each reported; 503 unless all are fine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.models import WorkerHeartbeat
from tests.helpers import db, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def get_health() -> tuple[int, dict]:
    response = await db(Client().get, "/healthz")
    return response.status_code, response.json()


async def test_healthy_once_a_worker_beats(worker):
    await wait_until(lambda: WorkerHeartbeat.objects.filter(executor_id=worker.executor_id).exists(), what="a heartbeat")
    status, body = await get_health()
    assert status == 200 and body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["channel_layer"]["ok"]
    assert body["checks"]["workers"] == {"ok": True, "alive": 1}


async def test_unavailable_without_a_live_worker():
    await db(WorkerHeartbeat.objects.create, executor_id="gone:1:x", seen_at=timezone.now() - timedelta(minutes=5))
    status, body = await get_health()
    assert status == 503 and body["status"] == "unavailable"
    assert body["checks"]["workers"] == {"ok": False, "alive": 0}  # a stale heartbeat is not a live worker
    assert body["checks"]["database"]["ok"] and body["checks"]["channel_layer"]["ok"]


async def test_unreadable_heartbeats_are_unhealthy_not_a_server_error(monkeypatch):
    """A database that answers but has no heartbeat table (not migrated yet) is a 503 that says so."""
    from django.db import OperationalError

    from harness import health

    def missing_table():
        raise OperationalError("no such table: orchestrator_workerheartbeat")

    monkeypatch.setattr(health, "live_workers", missing_table)
    status, body = await get_health()
    assert status == 503 and body["checks"]["database"]["ok"]
    assert body["checks"]["workers"] == {"ok": False, "error": "OperationalError"}


async def test_an_unreachable_channel_layer_is_reported(worker, monkeypatch):
    await wait_until(lambda: WorkerHeartbeat.objects.exists(), what="a heartbeat")
    from harness import health

    async def broken_round_trip():
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(health, "_round_trip", broken_round_trip)
    status, body = await get_health()
    assert status == 503 and body["checks"]["channel_layer"]["ok"] is False
    assert body["checks"]["channel_layer"]["error"] == "ConnectionRefusedError"


def test_runworker_is_the_orchestrators():
    from django.core.management import get_commands, load_command_class

    command = load_command_class(get_commands()["runworker"], "runworker")
    from orchestrator.worker import OrchestratorWorker

    assert command.worker_class is OrchestratorWorker


async def test_reports_how_commands_run_without_changing_health(worker, settings):
    await wait_until(lambda: WorkerHeartbeat.objects.filter(executor_id=worker.executor_id).exists(), what="a heartbeat")
    status, body = await get_health()
    assert status == 200 and body["sandbox"] == {"mode": "bubblewrap", "network": False}
    settings.HARNESS_BWRAP = "/nonexistent/bwrap"
    status, body = await get_health()
    assert status == 200 and body["status"] == "ok"  # everything but the shell tool still works
    assert body["sandbox"] == {
        "mode": "refused", "network": False,
        "reason": "bubblewrap (/nonexistent/bwrap) is not installed (Debian: apt-get install bubblewrap)",
    }
    settings.HARNESS_UNSAFE_TOOLS = True
    assert (await get_health())[1]["sandbox"]["mode"] == "unsafe"
