"""orchestrator/engine/lease.py: heartbeats (who is alive, and the rows of workers long gone pruned)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.engine.lease import heartbeat_beat, live_workers
from orchestrator.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_a_beat_records_the_worker_and_prunes_workers_gone_for_a_day():
    now = timezone.now()
    WorkerHeartbeat.objects.create(executor_id="gone:1:a", seen_at=now - timedelta(days=2))
    WorkerHeartbeat.objects.create(executor_id="recent:2:b", seen_at=now - timedelta(hours=23))
    heartbeat_beat(executor_id="host:3:c", channel="specific.x", runs=4)
    rows = dict(WorkerHeartbeat.objects.values_list("executor_id", "runs"))
    assert rows == {"recent:2:b": 0, "host:3:c": 4}
    assert live_workers() == 1  # a day-old row is kept for inspection, but it is not a live worker
