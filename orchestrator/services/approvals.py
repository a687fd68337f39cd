"""Approval decisions, expiry and sweeps. Every change is a conditional UPDATE on `status = pending`, so of
two racing decisions (or a decision racing a stop's sweep) exactly one wins, and a closed approval's call
is never dispatched."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .. import events, permissions
from ..models import Approval, ApprovalStatus, CallStatus, FunctionCall, Run
from ..wakeups import RUN_WAKE, wake_on_commit
from .calls import call_finish
from .errors import InvalidInput, NotFound
from .ids import parse_uuid

Decision = Literal["approve", "deny"]
DECISIONS: tuple[Decision, ...] = ("approve", "deny")


@dataclass(frozen=True)
class DecisionResult:
    accepted: bool
    reason: str | None

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason}


def approval_decide(
    *, approval_id, user: AbstractBaseUser, decision: Decision, session_id=None
) -> DecisionResult:
    """`session_id`: only an approval of that session counts (a session's socket speaks for it alone). Owners
    and collaborators decide; a viewer gets Forbidden, anyone else NotFound (`permissions`)."""
    if decision not in DECISIONS:
        raise InvalidInput("invalid_field", "'decision' must be 'approve' or 'deny'")
    approval_uuid = parse_uuid(approval_id)
    with transaction.atomic():
        approvals = Approval.objects.select_related("function_call", "run__session").filter(pk=approval_uuid)
        if session_id is not None:
            approvals = approvals.filter(run__session_id=session_id)
        approval = approvals.first() if approval_uuid else None
        try:
            if approval is None:
                raise NotFound("no such approval")
            permissions.check(approval.run.session, user, "act")
        except NotFound:
            raise NotFound("no such approval") from None
        # Lock the run: serialises this decision with a stop's sweep and with the run parking.
        Run.objects.select_for_update().filter(pk=approval.run_id).first()
        now = timezone.now()
        if approval.status == ApprovalStatus.PENDING and approval.expires_at <= now:
            emitted = approval_expire(approval=approval, now=now)
            wake_on_commit(RUN_WAKE, approval.run_id, session_id=approval.run.session_id, events=emitted)
            return DecisionResult(False, "approval_closed")
        status = ApprovalStatus.APPROVED if decision == "approve" else ApprovalStatus.DENIED
        won = Approval.objects.filter(pk=approval.pk, status=ApprovalStatus.PENDING).update(
            status=status, decided_by=user, decided_at=now, reason="decided"
        )
        if not won:
            return DecisionResult(False, "approval_closed")
        call = approval.function_call
        emitted = [events.approval_resolved(approval_id=approval.id, status=status, reason="decided")]
        if status == ApprovalStatus.APPROVED:
            FunctionCall.objects.filter(pk=call.pk, status=CallStatus.AWAITING_APPROVAL).update(status=CallStatus.APPROVED)
        else:
            emitted += call_finish(
                call=call, session_id=approval.run.session_id, status=CallStatus.DENIED,
                result=f"denied by {user.get_username()}", now=now,
            )
        wake_on_commit(RUN_WAKE, approval.run_id, approval.run.lease_channel, session_id=approval.run.session_id,
                       events=emitted)
    return DecisionResult(True, None)


def approval_expire(*, approval: Approval, now: datetime) -> list[events.Event]:
    """Close an overdue approval; its call is denied with a result saying why. Call inside a transaction."""
    if not Approval.objects.filter(pk=approval.pk, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.EXPIRED, reason="expired", decided_at=now
    ):
        return []
    return [events.approval_resolved(approval_id=approval.id, status=ApprovalStatus.EXPIRED, reason="expired")] + call_finish(
        call=approval.function_call, session_id=approval.run.session_id, status=CallStatus.DENIED,
        result="denied: the approval request expired", now=now,
    )


def approval_sweep(*, run: Run, reason: str, now: datetime) -> list[events.Event]:
    """Close every pending approval of the run (a stop's sweep). Call inside the stop's transaction."""
    pending = list(Approval.objects.filter(run=run, status=ApprovalStatus.PENDING).values_list("pk", flat=True))
    Approval.objects.filter(pk__in=pending, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.SWEPT, reason=reason, decided_at=now
    )
    return [events.approval_resolved(approval_id=pk, status=ApprovalStatus.SWEPT, reason=reason) for pk in pending]
