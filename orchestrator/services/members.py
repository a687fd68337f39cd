"""Sharing a session: granting a user or a group (a team) a role on it, and taking the grant away. The owner's
acts (`permissions`). Taking access away closes the sockets it leaves without a role (`events.access_changed`)."""

from __future__ import annotations

from typing import Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction

from .. import events, permissions
from ..models import MemberRole, Session, SessionMember
from .errors import InvalidInput, NotFound
from .ids import parse_uuid

Kind = Literal["user", "group"]
KINDS: tuple[Kind, ...] = ("user", "group")


class UnknownMember(NotFound):
    code = "unknown_member"


def _grantee(kind: Kind, name) -> dict:
    """The filter naming the grantee: {"user": u} or {"group": g}; 404 `unknown_member` if there is none."""
    if kind not in KINDS:
        raise InvalidInput("invalid_field", "members are users or groups")
    if not isinstance(name, str) or not name.strip() or "\x00" in name:  # (a NUL: PostgreSQL refuses it)
        raise InvalidInput("invalid_field", f"enter the name of a {kind}")
    if kind == "user":
        found = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: name}).first()
    else:
        found = Group.objects.filter(name=name).first()
    if found is None:
        raise UnknownMember(f"no {kind} named {name!r}")
    return {kind: found}


def _session_to_manage(session_id, user: AbstractBaseUser, as_admin: bool) -> Session:
    """The session, locked, if `user` owns it (`permissions`). `as_admin`: the admin's staff, whose right comes from
    Django's model permissions (checked by the admin), manage any session."""
    if not as_admin:
        return permissions.session_for(user=user, session_id=session_id, need="own", lock=True)
    session_uuid = parse_uuid(session_id)
    session = Session.objects.select_for_update().filter(pk=session_uuid).first() if session_uuid else None
    if session is None:
        raise NotFound("no such session")
    return session


def session_member_set(*, session_id, user: AbstractBaseUser, kind: Kind, name: str, role: str,
                       as_admin: bool = False) -> SessionMember:
    """Grant `role` (viewer, collaborator) to the user or group `name`, or change its role. The owner cannot be a
    member (400 `owner_is_member`). `as_admin`: no ownership check (the admin's members inline)."""
    if role not in MemberRole.values:
        raise InvalidInput("invalid_field", "'role' must be 'viewer' or 'collaborator'")
    with transaction.atomic():
        session = _session_to_manage(session_id, user, as_admin)
        grantee = _grantee(kind, name)
        if kind == "user" and grantee["user"].pk == session.owner_id:
            raise InvalidInput("owner_is_member", "the owner already has every right: they cannot be a member")
        member, _ = SessionMember.objects.update_or_create(session=session, **grantee, defaults={"role": role})
        events.activity_on_commit(session.id)  # the new member's sidebar lists it (harness/portal/sidebar.py)
    return member


def session_member_remove(*, session_id, user: AbstractBaseUser, kind: Kind, name: str,
                          as_admin: bool = False) -> Session:
    """Take the grant of the user or group `name` away (nothing to take is fine). Their sockets on the session
    that are left without a role close at once (4403). `as_admin`: no ownership check (the admin's members
    inline)."""
    with transaction.atomic():
        session = _session_to_manage(session_id, user, as_admin)
        grantee = _grantee(kind, name)
        if SessionMember.objects.filter(session=session, **grantee).delete()[0]:
            events.access_changed_on_commit(session.id)
    return session


def access_changed_for_users(*, user_ids) -> None:
    """A change outside the sessions (a user deactivated or leaving a group) may take access away: every session
    those users could reach re-checks its sockets once the change commits. Inside the change's transaction."""
    grants = SessionMember.objects.filter(user_id__in=user_ids) | SessionMember.objects.filter(
        group__user__in=user_ids)
    ids = set(grants.values_list("session_id", flat=True))
    ids |= set(Session.objects.filter(owner_id__in=user_ids).values_list("id", flat=True))
    events.access_changed_on_commit(*ids)


def access_changed_for_groups(*, group_ids) -> None:
    """Users left these groups (or the groups are going): sessions shared with them re-check their sockets."""
    ids = SessionMember.objects.filter(group_id__in=group_ids).values_list("session_id", flat=True)
    events.access_changed_on_commit(*set(ids))
