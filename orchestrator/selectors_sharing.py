"""Reads for sharing: the caller's session list (search, scope, archived, cursor pages) and a session's members.
Who sees what is `orchestrator/permissions.py`'s; this module only shapes the answers."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from . import permissions
from .models import TERMINAL_STATES, Message, Run, Session, SessionMember
from .selectors import session_summary
from .services.errors import InvalidInput
from .services.ids import parse_uuid
from .services.text import checked_text

SCOPES = ("all", "mine", "shared")
MAX_LIMIT = 100
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class SessionPage:
    sessions: list[dict]
    next_cursor: str | None

    def as_dict(self) -> dict:
        return {"sessions": self.sessions, "next_cursor": self.next_cursor}


def _cursor(session: Session) -> str:
    raw = f"{session.updated_at.isoformat()}|{session.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> Q:
    """Sessions after the one `cursor` names, in the list's order (newest activity first, then id)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, session_id = raw.partition("|")
        updated_at, session_uuid = datetime.fromisoformat(stamp), parse_uuid(session_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        session_uuid = None
    if session_uuid is None or updated_at.tzinfo is None:
        raise InvalidInput("invalid_cursor", "'cursor' must be a next_cursor this API returned")
    return Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=session_uuid)


def session_list(
    *, user: AbstractBaseUser, q: str = "", scope: str = "all", archived: bool = False,
    limit: int = DEFAULT_LIMIT, cursor: str | None = None,
) -> SessionPage:
    """The sessions `user` can see, newest activity (`updated_at`) first, each with the caller's role. `q`: a
    case-insensitive substring of the title or of a (current) message's text. `scope`: all, mine (owned),
    shared (others'). `archived`: the archived ones instead of the others."""
    if scope not in SCOPES:
        raise InvalidInput("invalid_field", "'scope' must be 'all', 'mine' or 'shared'")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("invalid_field", f"'limit' must be between 1 and {MAX_LIMIT}")
    sessions = permissions.visible_sessions(user).filter(archived_at__isnull=not archived)
    if scope == "mine":
        sessions = sessions.filter(owner_id=user.pk)
    elif scope == "shared":
        sessions = sessions.exclude(owner_id=user.pk)
    if q:
        checked_text(q, name="q", code="invalid_field")  # a NUL would be a database error on PostgreSQL
        matching = Message.objects.current().filter(text__icontains=q).values("session_id")
        sessions = sessions.filter(Q(title__icontains=q) | Q(pk__in=matching))
    if cursor:
        sessions = sessions.filter(_after(cursor))
    page = list(sessions.select_related("owner").order_by("-updated_at", "-id")[: limit + 1])
    more, page = len(page) > limit, page[:limit]
    roles = permissions.session_roles(page, user)
    live = {
        run.session_id: run
        for run in Run.objects.filter(session__in=[s.pk for s in page]).exclude(state__in=TERMINAL_STATES)
    }
    return SessionPage(
        sessions=[session_listing(s, role=roles[s.pk], live_run=live.get(s.pk)) for s in page],
        next_cursor=_cursor(page[-1]) if more else None,
    )


def session_listing_for(*, user: AbstractBaseUser, session_id) -> dict | None:
    """One session's listing as `session_list` shows it, or None if `user` cannot see it (or it is gone)."""
    session_uuid = parse_uuid(session_id)
    session = (permissions.visible_sessions(user).select_related("owner").filter(pk=session_uuid).first()
               if session_uuid else None)
    if session is None:
        return None
    live_run = Run.objects.filter(session=session).exclude(state__in=TERMINAL_STATES).first()
    return session_listing(session, role=permissions.session_roles([session], user)[session.pk], live_run=live_run)


def session_listing(session: Session, *, role: str, live_run: Run | None) -> dict:
    return {
        **session_summary(session),
        "role": role,
        "owner": session.owner.get_username(),
        "archived": session.archived_at is not None,
        "archived_at": session.archived_at.isoformat() if session.archived_at else None,
        "active_run": (
            {"id": str(live_run.id), "state": live_run.state, "stop_requested": live_run.stop_requested}
            if live_run else None
        ),
    }


def session_members(session: Session) -> dict:
    """`{"owner": username, "members": [{"kind": "user"|"group", "name", "role"}]}`, oldest grant first."""
    grants = SessionMember.objects.filter(session=session).select_related("user", "group")
    return {
        "owner": session.owner.get_username(),
        "members": [
            {"kind": "user", "name": g.user.get_username(), "role": g.role} if g.user_id
            else {"kind": "group", "name": g.group.name, "role": g.role}
            for g in grants
        ],
    }


def session_is_shared(session: Session) -> bool:
    """Whether anyone but the owner has access (a user or a group granted a role)."""
    return SessionMember.objects.filter(session=session).exists()
