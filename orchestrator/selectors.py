"""Reads: what every client's view comes from — the HTTP and WebSocket APIs' JSON and the portal's HTML
fragments alike. Nothing in `harness/` queries the ORM itself (admin and auth glue aside)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count

from . import permissions
from .models import (
    TERMINAL_STATES,
    Approval,
    ApprovalStatus,
    FunctionCall,
    Message,
    Run,
    RunState,
    Session,
    SteeringMessage,
    SteeringStatus,
    WorkspaceUpload,
)
from .providers.catalog import session_model
from .services.ids import parse_uuid


def iso(value) -> str | None:
    return value.isoformat() if value else None


def session_for_user(*, session_id, user: AbstractBaseUser) -> Session | None:
    """The session if `user` can see it (any role: `orchestrator/permissions.py`)."""
    session_uuid = parse_uuid(session_id)
    return permissions.visible_sessions(user).filter(pk=session_uuid).first() if session_uuid else None


def user_can_act(session: Session, user: AbstractBaseUser) -> bool:
    """Whether `user` may send, stop, steer and decide in `session` (a viewer only watches)."""
    return permissions.allows(permissions.session_role(session, user), "act")


def session_for_approval(*, approval_id, user: AbstractBaseUser) -> Session | None:
    approval_uuid = parse_uuid(approval_id)
    if approval_uuid is None:
        return None
    return permissions.visible_sessions(user).filter(runs__approvals__pk=approval_uuid).first()


def run_for_user(*, run_id, user: AbstractBaseUser) -> Run | None:
    run_uuid = parse_uuid(run_id)
    if run_uuid is None:
        return None
    return (Run.objects.select_related("session", "stop_requested_by", "started_by")
            .filter(pk=run_uuid, session__in=permissions.visible_sessions(user)).first())


def session_summary(session: Session) -> dict:
    return {
        "id": str(session.id),
        "title": session.title,
        "model": session_model(session.model),  # the model the session's next run uses
        "created_at": iso(session.created_at),
        "updated_at": iso(session.updated_at),
    }


def message_data(message: Message) -> dict:
    call = message.function_call
    return {
        "id": message.id,
        "run_id": str(message.run_id) if message.run_id else None,
        "role": message.role,
        "text": message.text,
        "status": message.status,
        "author": message.author.get_username() if message.author_id else None,
        "call_id": call.call_id if call else None,
        "tool_name": call.name if call else None,
        "usage": (
            {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens,
             "estimated": message.usage_estimated}
            if message.output_tokens is not None
            else None
        ),
        "created_at": iso(message.created_at),
    }


def upload_data(upload: WorkspaceUpload) -> dict:
    return {
        "name": upload.name, "path": upload.name, "size": upload.size, "message_id": upload.message_id,
        "uploaded_by": upload.uploaded_by.get_username() if upload.uploaded_by_id else None,
        "created_at": iso(upload.created_at),
    }


def run_summary(run: Run) -> dict:
    return {
        "id": str(run.id),
        "state": run.state,
        "outcome": run.outcome or None,
        "turn_count": run.turn_count,
        "max_turns": run.max_turns,
        "stop_requested": run.stop_requested,
        "started_by": run.started_by.get_username() if run.started_by_id else None,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def call_data(call: FunctionCall) -> dict:
    return {
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
        "status": call.status,
        "result": call.result if call.has_result else None,
        "created_at": iso(call.created_at),
        "started_at": iso(call.started_at),
        "finished_at": iso(call.finished_at),
    }


def approval_data(approval: Approval) -> dict:
    call = approval.function_call
    return {
        "id": str(approval.id),
        "run_id": str(approval.run_id),
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
        "status": approval.status,
        "reason": approval.reason or None,
        "decided_by": approval.decided_by.get_username() if approval.decided_by_id else None,
        "created_at": iso(approval.created_at),
        "expires_at": iso(approval.expires_at),
    }


def steering_data(steering: SteeringMessage) -> dict:
    return {
        "id": str(steering.id),
        "run_id": str(steering.run_id),
        "text": steering.text,
        "status": steering.status,
        "reason": steering.reason or None,
        "created_by": steering.created_by.get_username() if steering.created_by_id else None,
        "created_at": iso(steering.created_at),
    }


def live_runs_by_state() -> dict[str, int]:
    """How many runs are in each non-terminal state (every such state present, 0 included)."""
    counts = dict(
        Run.objects.exclude(state__in=TERMINAL_STATES).values("state").annotate(n=Count("id")).values_list("state", "n")
    )
    return {state: counts.get(state, 0) for state in RunState.values if state not in TERMINAL_STATES}


def latest_run(session_id) -> Run | None:
    """The session's latest run (the live one, if any run is live)."""
    return Run.objects.filter(session_id=session_id).newest_first().select_related("stop_requested_by", "started_by").first()


def _renderable_messages(session: Session):
    return (Message.objects.current().filter(session=session)
            .select_related("function_call", "author").prefetch_related("function_calls"))


def transcript_messages(session: Session) -> list[Message]:
    """The session's current messages (superseded ones are not shown) in order, with what rendering them needs."""
    return list(_renderable_messages(session).order_by("id"))


# How many messages a transcript page holds: the session page opens with the newest page.
TRANSCRIPT_PAGE = 50


def transcript_page(session: Session, *, before: int | None = None,
                    limit: int = TRANSCRIPT_PAGE) -> tuple[list[Message], bool]:
    """The newest `limit` current messages of the session older than message id `before` (all of them if
    None), oldest first, with what rendering them needs, and whether older ones exist. Keyset pagination on
    the message id: one query for the page (and one for its calls), whatever the session's length."""
    rows = _renderable_messages(session)
    if before is not None:
        rows = rows.filter(id__lt=before)
    page = list(rows.order_by("-id")[: limit + 1])
    has_older = len(page) > limit
    return page[:limit][::-1], has_older


def latest_user_message(session: Session) -> Message | None:
    """The message an edit or a regeneration replaces (`run_start(replace_from_message=...)`)."""
    return Message.objects.latest_user(session.id)


def message_with_call(message_id: int) -> Message | None:
    return Message.objects.select_related("function_call", "author").filter(pk=message_id).first()


def checkpointed_text(message_id: int) -> str:
    """A streaming message's text as far as the engine has checkpointed it."""
    return Message.objects.filter(pk=message_id).values_list("text", flat=True).first() or ""


def run_calls(run: Run) -> list[FunctionCall]:
    return list(FunctionCall.objects.filter(run=run).order_by("created_at", "position"))


def run_approvals(run: Run | None) -> list[Approval]:
    """The run's approvals, oldest first (with who decided them), for its approval cards."""
    if run is None:
        return []
    return list(Approval.objects.filter(run=run).select_related("function_call", "decided_by").order_by("created_at"))


def run_steering(run: Run | None) -> list[SteeringMessage]:
    return list(SteeringMessage.objects.filter(run=run).select_related("created_by").order_by("created_at")) if run else []


def session_snapshot(session: Session) -> dict:
    """The whole live state of a session: a client that applies later events to it stays current."""
    latest = latest_run(session.id)
    active = latest if latest is not None and latest.state not in TERMINAL_STATES else None
    messages = (Message.objects.current().filter(session=session).select_related("function_call", "author")
                .order_by("id"))
    pending = (
        Approval.objects.filter(run__session=session, status=ApprovalStatus.PENDING)
        .select_related("function_call", "decided_by")
        .order_by("created_at")
    )
    steering = SteeringMessage.objects.filter(session=session).select_related("created_by")
    steering = steering.filter(run=latest) if latest else steering.none()
    return {
        **session_summary(session),
        "messages": [message_data(m) for m in messages],
        "active_run": run_summary(active) if active else None,
        "latest_run": run_summary(latest) if latest else None,
        "pending_approvals": [approval_data(a) for a in pending],
        "steering": [
            steering_data(s) for s in steering.filter(status__in=[SteeringStatus.QUEUED, SteeringStatus.DISCARDED])
        ],
    }


def run_detail(run: Run, *, calls: list[FunctionCall] | None = None, approvals: list[Approval] | None = None) -> dict:
    """A run in full. `calls` and `approvals` (in the orders `run_calls` and `run_approvals` give) may be passed
    by a caller that read them for many runs at once."""
    calls = run_calls(run) if calls is None else calls
    approvals = run_approvals(run) if approvals is None else approvals
    return {
        **run_summary(run),
        "session_id": str(run.session_id),
        "model": run.model or None,
        "error": run.error or None,
        "stop": {
            "requested": run.stop_requested,
            "requested_at": iso(run.stop_requested_at),
            "requested_by": run.stop_requested_by.get_username() if run.stop_requested_by else None,
            "reason": run.stop_reason or None,
            "acknowledged_at": iso(run.stop_acknowledged_at),
            "latency_ms": run.stop_latency_ms,
        },
        "usage": {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "estimated": run.usage_estimated},
        "function_calls": [call_data(c) for c in calls],
        "approvals": [approval_data(a) for a in approvals],
        "receipt": run.receipt,
    }
