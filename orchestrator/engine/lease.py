"""The lease: exactly one executor drives a run.

Taken and renewed with conditional UPDATEs (never read-then-write), so two workers racing for one run
cannot both win, and a worker whose lease was taken over finds out at its next renewal or transition.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import metrics
from ..models import TERMINAL_STATES, Approval, ApprovalStatus, Run, RunState, WorkerHeartbeat


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.HARNESS_LEASE_TTL_SECONDS)


def lease_acquire(*, run_id, executor_id: str, channel: str = "") -> bool:
    now = timezone.now()
    live = Run.objects.filter(pk=run_id).exclude(state__in=TERMINAL_STATES)
    lease = {
        "executor_id": executor_id, "lease_channel": channel, "lease_expires_at": now + lease_ttl(),
        "started_at": Coalesce("started_at", now),
    }
    if live.filter(Q(executor_id="") | Q(executor_id=executor_id)).update(**lease):
        return True
    # Taking over from an executor whose lease lapsed: it died or hung mid-step. Count it, so a run that
    # keeps killing its workers is finalized instead of resumed forever.
    taken_over = live.exclude(executor_id="").filter(lease_expires_at__lt=now).update(
        resume_count=F("resume_count") + 1, **lease
    )
    if taken_over == 1:
        metrics.LEASE_TAKEOVERS.inc()  # (an autocommit update: it is committed here)
    return taken_over == 1


def leases_watch(*, run_ids: list[str], executor_id: str, channel: str = "", renew: bool) -> tuple[set[str], set[str]]:
    """One round of the worker's watch over every run it drives: renew their leases (when `renew`) and read
    their stop flags, in two statements whatever the number of runs. Returns (stop requested, lease lost).

    A renewal also records the worker's current channel (it changes if its consumer was restarted), so stops
    keep reaching the executor directly."""
    if renew:
        fields = {"lease_expires_at": timezone.now() + lease_ttl()}
        if channel:
            fields["lease_channel"] = channel
        Run.objects.filter(pk__in=run_ids, executor_id=executor_id).update(**fields)
    stopped, held = set(), set()
    for pk, holder, stop_requested_at in Run.objects.filter(pk__in=run_ids).values_list(
        "pk", "executor_id", "stop_requested_at"
    ):
        if stop_requested_at is not None:
            stopped.add(str(pk))
        if holder == executor_id:
            held.add(str(pk))
    return stopped, set(run_ids) - held


# Every process start adds a heartbeat row; one not seen for this long belongs to a process long gone.
HEARTBEAT_RETENTION = timedelta(days=1)


def heartbeat_beat(*, executor_id: str, channel: str, runs: int) -> None:
    """This worker is alive (and drives `runs` runs); rows of workers gone for a day are pruned."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(executor_id=executor_id,
                                             defaults={"channel_name": channel, "seen_at": now, "runs": runs})
    WorkerHeartbeat.objects.filter(seen_at__lt=now - HEARTBEAT_RETENTION).delete()


def live_workers(*, now=None) -> int:
    now = now or timezone.now()
    horizon = now - timedelta(seconds=3 * heartbeat_interval())
    return WorkerHeartbeat.objects.filter(seen_at__gte=horizon).count()


def heartbeat_interval() -> float:
    return settings.HARNESS_RECOVERY_INTERVAL_SECONDS


def lease_release(*, run_id, executor_id: str) -> None:
    Run.objects.filter(pk=run_id, executor_id=executor_id).update(executor_id="", lease_channel="", lease_expires_at=None)


def runs_without_executor(*, limit: int = 100) -> list[str]:
    """Non-terminal runs nobody drives: lease free or lapsed — except runs rightly parked on an approval."""
    now = timezone.now()
    waiting_on_a_person = Exists(
        Approval.objects.filter(run=OuterRef("pk"), status=ApprovalStatus.PENDING, expires_at__gt=now)
    )
    parked = Q(state=RunState.AWAITING_APPROVAL, stop_requested_at__isnull=True) & waiting_on_a_person
    return [
        str(pk)
        for pk in Run.objects.exclude(state__in=TERMINAL_STATES)
        .filter(Q(executor_id="") | Q(lease_expires_at__lt=now))
        .exclude(parked)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    ]
