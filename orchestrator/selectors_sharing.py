"""Reads for sharing: the caller's session list (search, scope, archived, cursor pages) and a session's members.
Who sees what is `orchestrator/permissions.py`'s; this module only shapes the answers."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Left

from . import permissions
from .models import TERMINAL_STATES, Message, Run, Session, SessionMember
from .selectors import session_summary
from .services.errors import InvalidInput
from .services.ids import parse_uuid
from .services.text import checked_text

SCOPES = ("all", "mine", "shared")
# PostgreSQL's full-text search: the `simple` configuration (lower-cased words, no stemming, no stop words, any
# language) over a title and the first SEARCHED_CHARS characters of a message (a bound that keeps a tsvector
# far below PostgreSQL's 1 MB limit). These expressions are the GIN indexes' of migration 0012_scale, to the
# letter: the planner uses an expression index only for the same expression.
SEARCH_CONFIG = "simple"
SEARCHED_CHARS = 65536
TEXT_INDEX = "message_text_search"
# A search whose words PostgreSQL's statistics put in at least this share of the messages walks the list
# instead of collecting every matching message (`matching`).
WALK_SHARE = 0.02
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
    # The first condition is implied by the others; it is the one an index range scan can start from.
    later = Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=session_uuid)
    return Q(updated_at__lte=updated_at) & later


def session_list(
    *, user: AbstractBaseUser, q: str = "", scope: str = "all", archived: bool = False,
    limit: int = DEFAULT_LIMIT, cursor: str | None = None,
) -> SessionPage:
    """The sessions `user` can see, newest activity (`updated_at`) first, each with the caller's role. `q`: a
    search (`matching`). `scope`: all, mine (owned), shared (others'). `archived`: the archived ones instead of the
    others."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("invalid_field", f"'limit' must be between 1 and {MAX_LIMIT}")
    sessions = listed_sessions(user=user, q=q, scope=scope, archived=archived, cursor=cursor)
    page = list(sessions.select_related("owner")[: limit + 1])
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
def listed_sessions(
    *, user: AbstractBaseUser, q: str = "", scope: str = "all", archived: bool = False, cursor: str | None = None,
) -> QuerySet[Session]:
    """The query behind `session_list` (unsliced), in the list's order: the session activity index's
    (`-updated_at, -id`), which a page walks from its cursor on."""
    if scope not in SCOPES:
        raise InvalidInput("invalid_field", "'scope' must be 'all', 'mine' or 'shared'")
    sessions = permissions.visible_sessions(user).filter(archived_at__isnull=not archived)
    if scope == "mine":
        sessions = sessions.filter(owner_id=user.pk)
    elif scope == "shared":
        sessions = sessions.exclude(owner_id=user.pk)
    if q:
        checked_text(q, name="q", code="invalid_field")  # a NUL would be a database error on PostgreSQL
        sessions = sessions.filter(matching(q))
    if cursor:
        sessions = sessions.filter(_after(cursor))
    return sessions.order_by("-updated_at", "-id")


def matching(q: str) -> Q:
    """Sessions whose title, or one current (not superseded) message, holds every whitespace-separated word of
    `q`, case-insensitively; the one place that decides how.

    On PostgreSQL, full-text search: each word must begin a word of the text (`deplo` finds "deployed"; words
    as PostgreSQL's parser splits them, so `foo-bar` finds "foo-bar" and `3.11` finds "3.11" but not
    "python3.11"). Elsewhere (SQLite), and for a `q` without a letter or digit, each word is a substring match
    (`icontains`).

    Two plans on PostgreSQL, both bounded, chosen by how common the words are (`_message_share`): rare words
    collect the sessions of every matching message from the GIN index (few); common ones would make that
    collection huge (a word in most of 200,000 messages: ~300 ms), so the list is walked in its order instead
    and each session is asked whether one of its messages matches, which stops at the first page's end."""
    words = q.split()
    if connection.vendor != "postgresql" or not any(ch.isalnum() for ch in q):
        in_title, in_text = Q(), Q()
        for word in words:
            in_title &= Q(title__icontains=word)
            in_text &= Q(text__icontains=word)
        return in_title | Q(pk__in=Message.objects.current().filter(in_text).values("session_id"))
    query = SearchQuery(" & ".join(map(_prefix_term, words)), search_type="raw", config=SEARCH_CONFIG)
    titles = Session.objects.alias(words=SearchVector("title", config=SEARCH_CONFIG)).filter(words=query)
    texts = (Message.objects.current().alias(words=SearchVector(Left("text", SEARCHED_CHARS), config=SEARCH_CONFIG))
             .filter(words=query))
    if (_message_share(words) or 0.0) < WALK_SHARE:
        # One IN of both sets (not an OR of two): PostgreSQL may then start from the few matches.
        return Q(pk__in=titles.order_by().values("pk").union(texts.order_by().values("session_id")))
    in_title = Q(pk__in=titles.values("pk"))
    # The walk. Each word's letters and digits must be in the text (a cheap test, implied by the match, that
    # spares computing most messages' words); the `>=` beside the `=` is always true and keeps PostgreSQL from
    # turning the per-session question back into the collection of every match (it hashes only `=`).
    for run in (run for word in words for run in _runs(word)):
        texts = texts.filter(text__icontains=run)
    return in_title | Q(Exists(texts.filter(session_id=OuterRef("pk"), session_id__gte=OuterRef("pk"))))


def _runs(word: str) -> list[str]:
    return re.findall(r"[^\W_]+", word)


def _message_share(words: list[str]) -> float | None:
    """At most what share of the messages holds every word (as a word's beginning), from the statistics
    ANALYZE keeps of the message index's expression (its most common words and their shares); None without
    statistics. A word missing from them is rarer than any in them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
                       "WHERE schemaname = current_schema() AND tablename = %s", [TEXT_INDEX])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    common = list(zip(*row))
    return min((sum(share for lexeme, share in common if lexeme.startswith(run.lower()))
                for word in words for run in _runs(word)), default=None)


def _prefix_term(word: str) -> str:
    """One word of a search as a quoted tsquery term matching as a prefix (`'word':*`): quoted, no character
    of the user's is an operator; PostgreSQL's parser splits it into words as it does the text."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "':*"


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
