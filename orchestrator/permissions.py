"""Who may do what to a session: the one rule, asked by every entry point (HTTP API, JSON socket, portal views
and socket, admin) through the services and selectors.

A session has its owner and members (`SessionMember`): users or Django groups (teams), each a `viewer` or a
`collaborator`. A user's role is the highest of: owner, their own grant, the grants of their groups. An
inactive or anonymous user has none. What each role may do:

- `view` (viewer and up): read the session, its runs and transcript, watch it live, list its members;
- `act` (collaborator and up): send, stop, steer, approve/deny, edit/regenerate;
- `own` (the owner only): rename, choose the model, archive, delete, manage members.

Without a role the session does not exist for the caller (`NotFound`, indistinguishable from a missing id);
with a role too low for the action it is `Forbidden` (403 `forbidden`).
"""

from __future__ import annotations

import functools
from typing import Literal

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q, QuerySet

from .models import MemberRole, Session, SessionMember
from .services.errors import Forbidden, NotFound
from .services.ids import parse_uuid

Role = Literal["owner", "collaborator", "viewer"]
Need = Literal["view", "act", "own"]

OWNER = "owner"
RANK: dict[str, int] = {MemberRole.VIEWER: 1, MemberRole.COLLABORATOR: 2, OWNER: 3}
NEEDS: dict[str, int] = {"view": 1, "act": 2, "own": 3}
WHAT = {"act": "a collaborator", "own": "the session's owner"}


def _active(user) -> bool:
    return user is not None and user.is_authenticated and user.is_active


def _grants(user) -> QuerySet[SessionMember]:
    """The user's grants, their own and their groups'."""
    return SessionMember.objects.filter(Q(user_id=user.pk) | Q(group__user=user.pk))


def visible_sessions(user) -> QuerySet[Session]:
    """Every session `user` has a role on (none for an inactive or anonymous user)."""
    if not _active(user):
        return Session.objects.none()
    return Session.objects.filter(Q(owner_id=user.pk) | Q(pk__in=_grants(user).values("session_id")))


def member_sessions(user) -> QuerySet[Session]:
    """The sessions `user` is a member of, by their own grant or a group's (not those they own; none for an
    inactive user). The admin's "member" filter on runs."""
    if not _active(user):
        return Session.objects.none()
    return Session.objects.filter(pk__in=_grants(user).values("session_id"))


def members():
    """Every active user who is a member of some session, by their own grant or a group's (the choices of the admin's
    "member" filter)."""
    granted = Q(session_grants__isnull=False) | Q(groups__session_grants__isnull=False)
    return get_user_model().objects.filter(granted, is_active=True).distinct()


def session_role(session: Session, user) -> Role | None:
    if not _active(user):
        return None
    if session.owner_id == user.pk:
        return OWNER
    roles = list(_grants(user).filter(session_id=session.pk).values_list("role", flat=True))
    return max(roles, key=RANK.__getitem__) if roles else None


def session_roles(sessions: list[Session], user) -> dict:
    """{session id: role} for sessions `user` can see (one query for a page of a list)."""
    roles: dict = {s.pk: OWNER for s in sessions if s.owner_id == user.pk}
    others = [s.pk for s in sessions if s.pk not in roles]
    for session_id, role in _grants(user).filter(session_id__in=others).values_list("session_id", "role"):
        if RANK[role] > RANK.get(roles.get(session_id), 0):
            roles[session_id] = role
    return roles


def session_audience(session_id) -> list:
    """The ids of the active users with a role on `session_id`: its owner, its user members and the members of
    its groups (one query). Who hears that the session's listing changed (`events.with_activity`)."""
    session_pk = Session._meta.pk.get_db_prep_value(Session._meta.pk.to_python(session_id), connection)
    with connection.cursor() as cursor:
        cursor.execute(_audience_sql(), [True, session_pk, session_pk, session_pk])
        return [user_id for (user_id,) in cursor.fetchall()]


@functools.cache
def _audience_sql() -> str:
    """The audience query in SQL. Written out because it runs inside every transaction that starts or ends a
    run, on the path to the first token: the ORM's compilation of the same query (three subqueries) took ~1 ms
    of CPU there, its execution a tenth of that. Table and column names come from the models."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    user_groups = user_model.groups.through
    session, member = Session._meta, SessionMember._meta

    def column(meta, field: str) -> str:
        return quote(meta.get_field(field).column)

    user, user_pk = quote(user_model._meta.db_table), quote(user_model._meta.pk.column)
    groups = quote(user_groups._meta.db_table)
    groups_user = quote(user_groups._meta.get_field(user_model._meta.model_name).column)
    groups_group = quote(user_groups._meta.get_field("group").column)
    members, member_session = quote(member.db_table), column(member, "session")
    member_user, member_group = column(member, "user"), column(member, "group")
    return (
        f"SELECT u.{user_pk} FROM {user} u WHERE u.{column(user_model._meta, 'is_active')} = %s AND ("
        f"u.{user_pk} IN (SELECT s.{column(session, 'owner')} FROM {quote(session.db_table)} s"
        f" WHERE s.{quote(session.pk.column)} = %s)"
        f" OR u.{user_pk} IN (SELECT m.{member_user} FROM {members} m"
        f" WHERE m.{member_session} = %s AND m.{member_user} IS NOT NULL)"
        f" OR u.{user_pk} IN (SELECT ug.{groups_user} FROM {groups} ug"
        f" JOIN {members} m ON m.{member_group} = ug.{groups_group} WHERE m.{member_session} = %s)"
        f") ORDER BY u.{user_pk}"
    )


def allows(role: str | None, need: Need) -> bool:
    return role is not None and RANK[role] >= NEEDS[need]


def check(session: Session, user, need: Need) -> Role:
    """The caller's role on `session` if it allows `need`; else NotFound (no role) or Forbidden."""
    role = session_role(session, user)
    if role is None:
        raise NotFound("no such session")
    if not allows(role, need):
        raise Forbidden(f"you are a {role} of this session: only {WHAT[need]} can do that")
    return role


def session_for(*, user, session_id, need: Need = "view", lock: bool = False) -> Session:
    """The session `session_id` if `user` may `need` it (NotFound: unknown, malformed or not visible;
    Forbidden: visible but the role is too low). `lock`: SELECT … FOR UPDATE (inside a transaction)."""
    session_uuid = parse_uuid(session_id)
    sessions = Session.objects.select_for_update() if lock else Session.objects
    session = sessions.filter(pk=session_uuid).first() if session_uuid else None
    if session is None:
        raise NotFound("no such session")
    check(session, user, need)
    return session


def current_role(*, session_id, user_id) -> Role | None:
    """The role of the user `user_id` on `session_id` read afresh (the user row too: deactivated → None). For a
    socket re-checking its access after a revocation."""
    user = get_user_model().objects.filter(pk=user_id).first()
    session = Session.objects.filter(pk=parse_uuid(session_id)).first()
    return session_role(session, user) if session is not None and user is not None else None
