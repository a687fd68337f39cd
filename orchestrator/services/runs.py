"""Starting, stopping and steering runs — the one implementation behind HTTP, WebSocket and the admin."""

from __future__ import annotations

import logging
from datetime import timedelta
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from .. import events, permissions
from ..models import TERMINAL_STATES, Message, MessageRole, Run, Session, SteeringMessage
from ..providers.catalog import ModelConfigError, resolve_model
from ..wakeups import RUN_START, RUN_STOP, wake_on_commit
from .approvals import approval_sweep
from .errors import Conflict, InvalidInput, NotFound, TooManyRequests
from .ids import parse_uuid
from .text import checked_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopResult:
    """The stop contract: never a false success."""

    accepted: bool
    reason: str | None
    prior_state: str | None
    run_id: str | None

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "prior_state": self.prior_state, "run_id": self.run_id}


NO_RECORD = StopResult(accepted=False, reason="no_record", prior_state=None, run_id=None)


def validate_text(text) -> str:
    text = checked_text(text, name="text", code="invalid_text")
    if not text.strip():
        raise InvalidInput("invalid_text", "text must not be empty")
    if len(text.encode("utf-8")) > settings.HARNESS_MAX_TEXT_BYTES:
        raise InvalidInput("text_too_long", f"text is limited to {settings.HARNESS_MAX_TEXT_BYTES} bytes")
    return text


def _session_to_act_on(session_id, user: AbstractBaseUser) -> Session:
    """The session if `user` may act on it (owner, collaborator): else NotFound or Forbidden (`permissions`)."""
    return permissions.session_for(user=user, session_id=session_id, need="act")


def run_start(*, session_id, user: AbstractBaseUser, text: str | None, replace_from_message: int | None = None) -> Run:
    """Open a run with the user's message. 409 `run_in_progress` while another run of the session is live.

    `replace_from_message` (edit and regenerate): the id of the session's latest user message. That message
    and every message after it are marked superseded by the new run, in the same transaction that creates
    it, and the new run's input is the history before it plus `text` (`None`: the replaced message's own
    text, i.e. regenerate). 400 `invalid_replace_from_message` if it is not a user message of this session,
    409 `not_latest_user_message` if it is not the latest one.
    """
    if text is not None or replace_from_message is None:
        text = validate_text(text)
    with transaction.atomic():
        session = _session_to_act_on(session_id, user)
        if Run.objects.filter(session=session).exclude(state__in=TERMINAL_STATES).exists():
            raise Conflict("run_in_progress", "a run is already in progress in this session")
        replaced = None
        if replace_from_message is not None:
            replaced = _replaceable_message(session, replace_from_message)
            text = replaced.text if text is None else text
        _within_user_limits(user)
        try:
            model = resolve_model(session.model).id
        except ModelConfigError as exc:
            raise Conflict("model_unavailable", f"{exc}; choose another model for this session") from None
        now = timezone.now()
        try:
            with transaction.atomic():  # the partial unique index is the real guard against a racing start
                run = Run.objects.create(
                    session=session, model=model, max_turns=settings.HARNESS_MAX_TURNS, created_at=now,
                    started_by=user,
                )
        except IntegrityError:
            raise Conflict("run_in_progress", "a run is already in progress in this session") from None
        superseded = _supersede_from(replaced, run=run, now=now) if replaced else []
        message = Message.objects.create(
            session=session, run=run, role=MessageRole.USER, text=text, author=user, created_at=now, updated_at=now
        )
        fields = ["updated_at"]
        session.updated_at = now
        if _named_by_next_message(session, replaced):
            session.title = _title_from(text)  # the first message names an unnamed session
            fields.append("title")
        session.save(update_fields=fields)
        wake_on_commit(
            RUN_START, run.id, session_id=session.id, started=run,
            events=[
                *([events.messages_superseded(message_ids=superseded, run_id=run.id)] if superseded else []),
                events.session_updated(session=session),
                events.message_completed(message=message),
                events.run_state(run_id=run.id, state=run.state, prev_state="", turn_count=0, stop_requested=False,
                                 started_by=user.get_username()),
            ],
        )
    return run


def _replaceable_message(session: Session, message_id) -> Message:
    """The message an edit or a regeneration replaces: the session's latest current user message."""
    if isinstance(message_id, bool) or not isinstance(message_id, int) or not 0 < message_id < 2**63:
        raise InvalidInput("invalid_replace_from_message", "replace_from_message must be a message id (an integer)")
    message = Message.objects.filter(session=session, pk=message_id, role=MessageRole.USER).first()
    if message is None:
        raise InvalidInput("invalid_replace_from_message",
                           f"message {message_id} is not a user message of this session")
    latest = Message.objects.latest_user(session.id)
    if latest is None or latest.pk != message.pk:
        raise Conflict("not_latest_user_message",
                       f"message {message_id} is not the latest user message of this session: only that one can "
                       "be edited or regenerated")
    return message


def _supersede_from(message: Message, *, run: Run, now) -> list[int]:
    """Mark `message` and every current message after it superseded by `run`; their ids, in order. Notes (an
    upload's) are kept: what they record happened (the file is in the workspace) whatever the edit."""
    later = (Message.objects.current().filter(session_id=message.session_id, pk__gte=message.pk)
             .exclude(role=MessageRole.NOTE))
    ids = list(later.order_by("id").values_list("id", flat=True))
    Message.objects.filter(pk__in=ids).update(superseded_at=now, superseded_by=run)
    return ids


def _within_user_limits(user: AbstractBaseUser) -> None:
    """One user cannot take the deployment's workers for themselves: at most HARNESS_MAX_LIVE_RUNS_PER_USER
    live runs, and HARNESS_MAX_RUN_STARTS_PER_MINUTE starts a minute (429 `too_many_runs`)."""
    counts = Run.objects.filter(started_by=user).aggregate(  # both in one query
        live=Count("pk", filter=~Q(state__in=TERMINAL_STATES)),
        last_minute=Count("pk", filter=Q(created_at__gte=timezone.now() - timedelta(minutes=1))),
    )
    live_limit = settings.HARNESS_MAX_LIVE_RUNS_PER_USER
    if counts["live"] >= live_limit:
        raise TooManyRequests("too_many_runs", f"you already have {live_limit} runs in progress: stop one or "
                                               "wait for one to finish")
    rate_limit = settings.HARNESS_MAX_RUN_STARTS_PER_MINUTE
    if counts["last_minute"] >= rate_limit:
        raise TooManyRequests("too_many_runs", f"you started {rate_limit} runs in the last minute: wait a moment")


def _named_by_next_message(session: Session, replaced: Message | None) -> bool:
    """An unnamed session is named by its first message, and still by an edit of that first message (the
    name it took from the replaced text goes with it)."""
    if session.title_chosen:
        return False
    if session.title == Session._meta.get_field("title").default:
        return True
    return (replaced is not None and session.title == _title_from(replaced.text)
            and not Message.objects.current().filter(session=session, pk__lt=replaced.pk).exists())


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:59] + "…"


def run_stop(*, session_id, requested_by: AbstractBaseUser, run_id=None, as_admin: bool = False) -> StopResult:
    """Request a stop of the session's latest run (or of `run_id` only, so a stale click never stops a newer run).

    The run-scoped flag and the sweep of its pending approvals commit together or not at all; the
    executor is woken after the commit. `as_admin` skips the permission check (the admin's action); otherwise
    a caller who cannot see the session gets `no_record` and a viewer `Forbidden` (`permissions`).
    """
    try:
        return _run_stop(session_id=session_id, requested_by=requested_by, run_id=run_id, as_admin=as_admin)
    except DatabaseError:
        logger.exception("stop of session %s could not be recorded", session_id)
        return StopResult(accepted=False, reason="store_unavailable", prior_state=None, run_id=None)


def _run_stop(*, session_id, requested_by: AbstractBaseUser, run_id, as_admin: bool) -> StopResult:
    session_uuid = parse_uuid(session_id)
    if session_uuid is None or (run_id is not None and parse_uuid(run_id) is None):
        return NO_RECORD
    with transaction.atomic():
        session = Session.objects.filter(pk=session_uuid).first()
        if session is None:
            return NO_RECORD
        if not as_admin:
            try:
                permissions.check(session, requested_by, "act")
            except NotFound:
                return NO_RECORD  # the same answer as a missing session: ids cannot be probed
        runs = Run.objects.select_for_update().filter(session_id=session_uuid)
        run = (runs.filter(pk=parse_uuid(run_id)) if run_id is not None else runs.newest_first()).first()
        if run is None:
            return NO_RECORD
        result = StopResult(accepted=True, reason=None, prior_state=run.state, run_id=str(run.id))
        if run.is_terminal:
            return StopResult(accepted=False, reason="already_stopped", prior_state=run.state, run_id=str(run.id))
        now = timezone.now()
        flagged = Run.objects.filter(pk=run.pk, stop_requested_at__isnull=True).exclude(state__in=TERMINAL_STATES).update(
            stop_requested_at=now, stop_requested_by=requested_by, stop_reason="admin" if as_admin else "user",
            stop_prior_state=run.state,
        )
        if not flagged:
            return StopResult(accepted=True, reason="already_stopping", prior_state=run.state, run_id=str(run.id))
        swept = approval_sweep(run=run, reason="run_stopped", now=now)
        wake_on_commit(
            RUN_STOP, run.id, run.lease_channel, session_id=run.session_id,
            events=[
                events.run_state(run_id=run.id, state=run.state, prev_state=run.state, turn_count=run.turn_count,
                                 stop_requested=True),
                *swept,
            ],
        )
    return result


def run_steer(*, session_id, user: AbstractBaseUser, text: str) -> SteeringMessage:
    """Queue a message for the live run; it is applied at the run's next steering check."""
    text = validate_text(text)
    with transaction.atomic():
        session = _session_to_act_on(session_id, user)
        run = (
            Run.objects.select_for_update()
            .filter(session=session)
            .exclude(state__in=TERMINAL_STATES)
            .first()
        )
        if run is None:
            raise Conflict("no_active_run", "no run is in progress in this session")
        if run.stop_requested:
            raise Conflict("run_stopping", "the run is stopping; send a new message once it has stopped")
        steering = SteeringMessage.objects.create(session=session, run=run, text=text, created_by=user)
        events.publish_on_commit(session.id, events.steering_changed(steering=steering))
    return steering
