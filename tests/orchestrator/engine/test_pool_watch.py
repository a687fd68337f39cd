"""The pool's one watcher: stop flags and lease renewals for every run this process drives, in one database
round whatever the number of runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.engine.executor import RunExecutor
from orchestrator.engine.lease import leases_watch
from orchestrator.engine.pool import ExecutorPool
from orchestrator.models import Run, RunState
from orchestrator.services.sessions import session_create

from ...helpers import db

pytestmark = pytest.mark.django_db(transaction=True)


def driven_runs(owner, pool: ExecutorPool, count: int) -> list[Run]:
    """Runs leased to `pool`, each with an executor that is (as far as the watcher can tell) driving it."""
    soon = timezone.now() + timedelta(seconds=2)
    runs = []
    for _ in range(count):
        session = session_create(owner=owner)  # (one live run per session)
        run = Run.objects.create(session=session, state=RunState.ASSISTANT_STREAMING, max_turns=5,
                                 executor_id=pool.executor_id, lease_expires_at=soon)
        executor = RunExecutor(run_id=str(run.id), executor_id=pool.executor_id, pool=pool)
        executor.driving = True
        pool.executors[str(run.id)] = executor
        runs.append(run)
    return runs


def watch_queries(pool: ExecutorPool, *, renew: bool) -> int:
    """The queries of one watch round (run here, on the test's connection, to count them)."""
    with CaptureQueriesContext(connection) as queries:
        leases_watch(run_ids=list(pool.executors), executor_id=pool.executor_id, renew=renew)
    return len(queries)


@pytest.mark.parametrize("count", [1, 40])
def test_one_round_costs_the_same_for_one_run_or_forty(user, count):
    pool = ExecutorPool()
    driven_runs(user, pool, count)
    assert watch_queries(pool, renew=False) == 1  # the stop flags and lease owners, together
    assert watch_queries(pool, renew=True) == 2  # plus one UPDATE renewing every lease


async def test_a_round_lands_stops_renews_leases_and_stops_executors_that_lost_theirs(user):
    pool = ExecutorPool()
    quiet, stopped, taken = await db(driven_runs, user, pool, 3)
    idle = RunExecutor(run_id="00000000-0000-0000-0000-000000000000", executor_id=pool.executor_id, pool=pool)
    pool.executors[idle.run_id] = idle  # not driving (its lease not taken yet): never touched
    await db(Run.objects.filter(pk=stopped.pk).update, stop_requested_at=timezone.now(), stop_requested_by=user)
    await db(Run.objects.filter(pk=taken.pk).update, executor_id="another-worker")
    before = timezone.now()

    await pool.watch_once(renew=True)

    executors = pool.executors
    assert not executors[str(quiet.id)].interrupt.is_set
    assert executors[str(stopped.id)].interrupt.stop_seen_at is not None
    assert executors[str(taken.id)].interrupt.lease_lost
    assert not idle.interrupt.is_set
    renewed = await db(lambda: {str(r.pk): r.lease_expires_at for r in Run.objects.all()})
    assert renewed[str(quiet.id)] > before + timedelta(seconds=5)  # a whole TTL (8 s) from now
    assert renewed[str(stopped.id)] > before + timedelta(seconds=5)
    assert renewed[str(taken.id)] < before + timedelta(seconds=5)  # not ours: left alone
