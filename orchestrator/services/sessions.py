"""Creating, renaming and deleting sessions."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .. import events
from ..models import TERMINAL_STATES, Run, Session
from .errors import Conflict, InvalidInput, NotFound
from .ids import parse_uuid

MAX_TITLE = 200


def _clean_title(title) -> str:
    if not isinstance(title, str):
        raise InvalidInput("invalid_title", "title must be a string")
    title = " ".join(title.split())
    try:
        title.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("invalid_title", "title contains invalid Unicode (a lone surrogate)") from None
    if "\x00" in title:
        raise InvalidInput("invalid_title", "title must not contain NUL characters")
    if len(title) > MAX_TITLE:
        raise InvalidInput("invalid_title", f"title is limited to {MAX_TITLE} characters")
    return title


def session_create(*, owner: AbstractBaseUser, title: str | None = None) -> Session:
    cleaned = _clean_title(title) if title is not None else ""
    return Session.objects.create(owner=owner, title=cleaned or "New session")


def session_rename(*, session_id, user: AbstractBaseUser, title: str) -> Session:
    cleaned = _clean_title(title)
    if not cleaned:
        raise InvalidInput("invalid_title", "title must not be empty")
    with transaction.atomic():
        session = _owned(session_id, user)
        session.title, session.updated_at = cleaned, timezone.now()
        session.save(update_fields=["title", "updated_at"])
        events.publish_on_commit(session.id, events.session_updated(session=session))
    return session


def session_delete(*, session_id, user: AbstractBaseUser) -> None:
    with transaction.atomic():
        session = _owned(session_id, user)
        if Run.objects.filter(session=session).exclude(state__in=TERMINAL_STATES).exists():
            raise Conflict("run_in_progress", "stop the run before deleting its session")
        session.delete()


def _owned(session_id, user: AbstractBaseUser) -> Session:
    session_uuid = parse_uuid(session_id)
    session = Session.objects.select_for_update().filter(pk=session_uuid, owner=user).first() if session_uuid else None
    if session is None:
        raise NotFound("no such session")
    return session
