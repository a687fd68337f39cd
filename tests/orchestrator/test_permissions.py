"""The one permission rule (orchestrator/permissions.py): roles from the owner, user grants and group grants."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, Group

from orchestrator import permissions
from orchestrator.models import SessionMember
from orchestrator.services.errors import Forbidden, NotFound
from tests.factories import TEAM, shared_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return shared_world(live=False)


def test_each_callers_role(world):
    roles = {key: permissions.session_role(world.session, user) for key, user in world.users.items()}
    assert roles == {"owner": "owner", "collaborator": "collaborator", "viewer": "viewer",
                     "group_member": "collaborator", "non_member": None}
    assert permissions.session_role(world.session, AnonymousUser()) is None


def test_a_user_grant_and_a_group_grant_combine_to_the_higher_role(world):
    carol = world.users["viewer"]
    carol.groups.add(Group.objects.get(name=TEAM))
    assert permissions.session_role(world.session, carol) == "collaborator"
    SessionMember.objects.filter(group__name=TEAM).update(role="viewer")
    bob = world.users["collaborator"]
    bob.groups.add(Group.objects.get(name=TEAM))
    assert permissions.session_role(world.session, bob) == "collaborator"  # his own grant is the higher


def test_inactive_users_have_no_role_not_even_the_owner(world):
    for key in ("owner", "viewer", "group_member"):
        user = world.users[key]
        user.is_active = False
        user.save()
        assert permissions.session_role(world.session, user) is None
        assert permissions.current_role(session_id=world.session.id, user_id=user.pk) is None
        assert not permissions.visible_sessions(user).exists()


@pytest.mark.parametrize(("key", "need", "outcome"), [
    ("owner", "own", None), ("collaborator", "act", None), ("collaborator", "own", Forbidden),
    ("group_member", "act", None), ("viewer", "view", None), ("viewer", "act", Forbidden),
    ("viewer", "own", Forbidden), ("non_member", "view", NotFound),
])
def test_session_for(world, key, need, outcome):
    call = lambda: permissions.session_for(user=world.users[key], session_id=world.session.id, need=need)  # noqa: E731
    if outcome is None:
        assert call() == world.session
    else:
        with pytest.raises(outcome) as raised:
            call()
        assert raised.value.status == (403 if outcome is Forbidden else 404)
        assert raised.value.code == ("forbidden" if outcome is Forbidden else "not_found")


@pytest.mark.parametrize("session_id", ["not-a-uuid", str(uuid.uuid4()), None, 7])
def test_unknown_and_malformed_ids_are_not_found(world, session_id):
    with pytest.raises(NotFound):
        permissions.session_for(user=world.users["owner"], session_id=session_id)


def test_visible_sessions_lists_each_session_once(world):
    bob = world.users["collaborator"]
    bob.groups.add(Group.objects.get(name=TEAM))  # two grants on one session
    assert list(permissions.visible_sessions(bob)) == [world.session]
    assert list(permissions.visible_sessions(world.users["non_member"])) == []
    assert permissions.session_roles([world.session], bob) == {world.session.pk: "collaborator"}


def test_member_sessions_are_those_granted_to_the_user_or_their_groups_not_owned(world):
    from orchestrator.services.sessions import session_create

    theirs = session_create(owner=world.users["non_member"], title="mallory's")
    SessionMember.objects.create(session=theirs, group=Group.objects.get(name=TEAM), role="viewer")
    SessionMember.objects.create(session=theirs, user=world.users["group_member"], role="viewer")  # both ways: once
    members = {key: list(permissions.member_sessions(user)) for key, user in world.users.items()}
    assert members == {"owner": [], "collaborator": [world.session], "viewer": [world.session],
                       "group_member": sorted([world.session, theirs], key=lambda s: s.updated_at, reverse=True),
                       "non_member": []}
    assert sorted(u.username for u in permissions.members()) == ["bob", "carol", "dave"]
    world.users["viewer"].is_active = False
    world.users["viewer"].save()
    assert list(permissions.member_sessions(world.users["viewer"])) == []
    assert sorted(u.username for u in permissions.members()) == ["bob", "dave"]
