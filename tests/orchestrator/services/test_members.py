"""Sharing a session (orchestrator/services/members.py): grants to users and groups, and taking them away."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from orchestrator.models import SessionMember
from orchestrator.services.errors import Forbidden, InvalidInput, NotFound
from orchestrator.services.members import session_member_remove, session_member_set
from tests.factories import TEAM, shared_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return shared_world(live=False)


def grants(session) -> set:
    return {(m.user.username if m.user_id else f"@{m.group.name}", m.role)
            for m in SessionMember.objects.filter(session=session).select_related("user", "group")}


def test_the_owner_grants_changes_and_takes_away(world):
    owner, session = world.users["owner"], world.session
    session_member_set(session_id=session.id, user=owner, kind="user", name="mallory", role="viewer")
    session_member_set(session_id=session.id, user=owner, kind="user", name="mallory", role="collaborator")
    session_member_set(session_id=session.id, user=owner, kind="group", name=TEAM, role="viewer")
    assert grants(session) == {("bob", "collaborator"), ("carol", "viewer"), ("mallory", "collaborator"),
                               (f"@{TEAM}", "viewer")}
    session_member_remove(session_id=session.id, user=owner, kind="user", name="mallory")
    session_member_remove(session_id=session.id, user=owner, kind="user", name="mallory")  # nothing left: fine
    session_member_remove(session_id=session.id, user=owner, kind="group", name=TEAM)
    assert grants(session) == {("bob", "collaborator"), ("carol", "viewer")}


@pytest.mark.parametrize(("kind", "name"), [("user", "nobody"), ("group", "no-such-team")])
def test_unknown_users_and_groups_are_404_unknown_member(world, kind, name):
    for call in (lambda: session_member_set(session_id=world.session.id, user=world.users["owner"], kind=kind,
                                            name=name, role="viewer"),
                 lambda: session_member_remove(session_id=world.session.id, user=world.users["owner"], kind=kind,
                                               name=name)):
        with pytest.raises(NotFound) as raised:
            call()
        assert (raised.value.status, raised.value.code) == (404, "unknown_member")


def test_the_owner_cannot_be_a_member(world):
    with pytest.raises(InvalidInput) as raised:
        session_member_set(session_id=world.session.id, user=world.users["owner"], kind="user", name="alice",
                           role="viewer")
    assert raised.value.code == "owner_is_member"


def test_a_bad_role_is_400(world):
    with pytest.raises(InvalidInput) as raised:
        session_member_set(session_id=world.session.id, user=world.users["owner"], kind="user", name="mallory",
                           role="admin")
    assert raised.value.code == "invalid_field"


@pytest.mark.parametrize(("key", "error"), [("collaborator", Forbidden), ("viewer", Forbidden),
                                            ("group_member", Forbidden), ("non_member", NotFound)])
def test_only_the_owner_manages_members(world, key, error):
    before = grants(world.session)
    with pytest.raises(error):
        session_member_set(session_id=world.session.id, user=world.users[key], kind="user", name="mallory",
                           role="collaborator")
    with pytest.raises(error):
        session_member_remove(session_id=world.session.id, user=world.users[key], kind="user", name="carol")
    assert grants(world.session) == before


def test_the_database_refuses_a_grant_to_both_or_neither_and_a_second_grant(world):
    bob = world.users["collaborator"]
    for fields in ({}, {"user": bob, "group_id": SessionMember.objects.filter(group__isnull=False).first().group_id},
                   {"user": bob}):
        with pytest.raises(IntegrityError), transaction.atomic():
            SessionMember.objects.create(session=world.session, role="viewer", **fields)
