"""Creating, updating (title, model, archived) and deleting sessions: the owner's acts (`permissions`)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .. import events, permissions
from ..models import TERMINAL_STATES, Run, Session
from ..providers.catalog import ModelConfigError, resolve_model
from .errors import Conflict, InvalidInput
from .text import checked_text

MAX_TITLE = 200


def _clean_title(title) -> str:
    title = " ".join(checked_text(title, name="title", code="invalid_title").split())
    if len(title) > MAX_TITLE:
        raise InvalidInput("invalid_title", f"title is limited to {MAX_TITLE} characters")
    return title


def _clean_model(model) -> str:
    """A model id offered here ("" for the deployment's default); 400 unknown_model otherwise."""
    if not isinstance(model, str):
        raise InvalidInput("invalid_model", "model must be a string (a model id, or \"\" for the default)")
    if not model.strip():
        return ""
    try:
        return resolve_model(model).id
    except ModelConfigError as exc:
        raise InvalidInput("unknown_model", str(exc)) from None


def session_create(*, owner: AbstractBaseUser, title: str | None = None, model: str | None = None) -> Session:
    cleaned = _clean_title(title) if title is not None else ""
    chosen = _clean_model(model) if model is not None else ""
    return Session.objects.create(owner=owner, title=cleaned or "New session", title_chosen=bool(cleaned),
                                  model=chosen)


def session_update(
    *, session_id, user: AbstractBaseUser, title: str | None = None, model: str | None = None,
    archived: bool | None = None,
) -> Session:
    """Rename a session, choose its model (the next run uses it; a run in flight keeps its own) and/or archive
    or unarchive it. The owner's act only (403 `forbidden` for a member)."""
    if title is None and model is None and archived is None:
        raise InvalidInput("missing_field", "give a title, a model, archived, or several")
    if archived is not None and not isinstance(archived, bool):
        raise InvalidInput("invalid_field", "'archived' must be true or false")
    cleaned = _clean_title(title) if title is not None else None
    if cleaned is not None and not cleaned:
        raise InvalidInput("invalid_title", "title must not be empty")
    chosen = _clean_model(model) if model is not None else None
    with transaction.atomic():
        session = _owned(session_id, user)
        if cleaned is not None:
            session.title, session.title_chosen = cleaned, True
        if chosen is not None:
            session.model = chosen
        if archived is not None and archived != (session.archived_at is not None):
            session.archived_at = timezone.now() if archived else None
        session.updated_at = timezone.now()
        session.save(update_fields=["title", "title_chosen", "model", "archived_at", "updated_at"])
        events.publish_on_commit(session.id, events.session_updated(session=session))
    return session


def session_delete(*, session_id, user: AbstractBaseUser) -> None:
    with transaction.atomic():
        session = _owned(session_id, user)
        if Run.objects.filter(session=session).exclude(state__in=TERMINAL_STATES).exists():
            raise Conflict("run_in_progress", "stop the run before deleting its session")
        events.access_changed_on_commit(session.id)  # every socket on it closes
        session.delete()


def _owned(session_id, user: AbstractBaseUser) -> Session:
    return permissions.session_for(user=user, session_id=session_id, need="own", lock=True)
