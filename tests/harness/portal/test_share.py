"""The Share dialog's endpoints (the owner's only: 403 for a member, 404 for anyone else, nothing changed), its
inline refusals, and authorship on the page of a shared session."""

from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.models import Message, SessionMember, SteeringMessage
from tests.factories import TEAM, shared_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return shared_world(live=False)


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def grants(world) -> set[tuple[str, str]]:
    return {(m.user.username if m.user_id else m.group.name, m.role)
            for m in SessionMember.objects.filter(session=world.session).select_related("user", "group")}


def test_only_the_owner_sees_the_share_button(world):
    page = as_user(world.users["owner"]).get(f"/sessions/{world.session.id}/").content.decode()
    assert 'id="share-open"' in page and 'id="share-dialog"' in page
    for role in ("collaborator", "viewer", "group_member"):
        page = as_user(world.users[role]).get(f"/sessions/{world.session.id}/").content.decode()
        assert 'id="share-open"' not in page and 'id="share-dialog"' not in page, role
        assert 'id="presence"' in page  # who is here: everyone's


def test_the_dialog_lists_the_owner_and_the_members_with_their_roles(world):
    body = as_user(world.users["owner"]).get(f"/sessions/{world.session.id}/share").content.decode()
    assert 'data-user="alice"' in body and ">owner<" in body
    for name in ("bob", "carol", TEAM):
        assert f'aria-label="Role of {name}"' in body and f'aria-label="Remove {name}"' in body
    assert 'data-shared="true"' in body


@pytest.mark.parametrize(("method", "path", "data"), [
    ("get", "share", {}),
    ("post", "share", {"kind": "user", "name": "mallory", "role": "viewer"}),
    ("post", "share", {"kind": "user", "name": "carol", "role": "collaborator"}),
    ("post", "share/remove", {"kind": "user", "name": "carol"}),
])
def test_members_get_403_and_others_404_and_nothing_changes(world, method, path, data):
    before = grants(world)
    url = f"/sessions/{world.session.id}/{path}"
    for role in ("collaborator", "viewer", "group_member"):
        response = getattr(as_user(world.users[role]), method)(url, data)
        assert response.status_code == 403, role
    assert getattr(as_user(world.users["non_member"]), method)(url, data).status_code == 404
    assert getattr(as_user(world.users["owner"]), method)(
        f"/sessions/3b2b3f0e-8a6b-4c1e-9d6a-000000000000/{path}", data).status_code == 404
    assert grants(world) == before
    # The same request from the owner is accepted: the refusals above were about who asked.
    assert getattr(as_user(world.users["owner"]), method)(url, data).status_code == 200


def test_an_anonymous_htmx_request_gets_401_and_a_page_request_the_login(world):
    url = f"/sessions/{world.session.id}/share"
    assert Client().get(url, HTTP_HX_REQUEST="true").status_code == 401
    assert Client().get(url).status_code == 302


def test_the_owner_adds_changes_and_removes_members(world, make_user):
    make_user("erin")
    owner = as_user(world.users["owner"])
    url = f"/sessions/{world.session.id}/share"
    body = owner.post(url, {"kind": "user", "name": " erin ", "role": "viewer"}).content.decode()
    assert ("erin", "viewer") in grants(world) and 'aria-label="Role of erin"' in body
    owner.post(url, {"kind": "user", "name": "erin", "role": "collaborator"})
    assert ("erin", "collaborator") in grants(world)
    body = owner.post(f"{url}/remove", {"kind": "user", "name": "erin"}).content.decode()
    assert "erin" not in {name for name, _ in grants(world)} and "Role of erin" not in body
    owner.post(f"{url}/remove", {"kind": "group", "name": TEAM})
    assert TEAM not in {name for name, _ in grants(world)}


@pytest.mark.parametrize(("data", "error"), [
    ({"kind": "user", "name": "nobody", "role": "viewer"}, "No user named &#x27;nobody&#x27;"),
    ({"kind": "group", "name": "nobody", "role": "viewer"}, "No group named &#x27;nobody&#x27;"),
    ({"kind": "user", "name": "  ", "role": "viewer"}, "Enter the name of a user"),
    ({"kind": "user", "name": "a\x00b", "role": "viewer"}, "Enter the name of a user"),
    ({"kind": "user", "name": "erin", "role": "owner"}, "&#x27;role&#x27; must be &#x27;viewer&#x27; or"),
    ({"kind": "team", "name": "erin", "role": "viewer"}, "Members are users or groups"),
    ({"kind": "user", "name": "alice", "role": "viewer"}, "The owner already has every right"),
])
def test_a_refused_share_is_explained_inline_and_the_form_keeps_what_was_typed(world, make_user, data, error):
    make_user("erin")
    before = grants(world)
    response = as_user(world.users["owner"]).post(f"/sessions/{world.session.id}/share", data)
    body = response.content.decode()
    assert response.status_code == 200  # the dialog's body, swapped in with the reason
    assert 'class="share-error error" role="alert">' + error in body
    if data["name"].strip() and "\x00" not in data["name"]:
        assert f'value="{data["name"]}"' in body
    assert grants(world) == before


def test_removing_an_unknown_member_is_explained_inline(world):
    body = as_user(world.users["owner"]).post(f"/sessions/{world.session.id}/share/remove",
                                              {"kind": "user", "name": "nobody"}).content.decode()
    assert "No user named &#x27;nobody&#x27;" in body


def test_a_shared_session_shows_who_wrote_each_message_and_who_steered(world):
    run = world.run
    SteeringMessage.objects.create(session=world.session, run=run, text="shorter please",
                                   created_by=world.users["collaborator"], status="discarded")
    Message.objects.create(session=world.session, run=run, role="user", text="from bob",
                           author=world.users["collaborator"])
    page = as_user(world.users["viewer"]).get(f"/sessions/{world.session.id}/").content.decode()
    assert 'class="session" hx-ext="ws"' in page and "data-shared>" in page
    assert '<span class="author">alice</span>' in page and '<span class="author">bob</span>' in page
    assert ('<span class="author">bob</span><p class="steer steer-discarded">Not applied (the run had ended): '
            'shorter please</p>') in page


def test_an_unshared_session_marks_nothing_as_shared(user, session):
    page = as_user(user).get(f"/sessions/{session.id}/").content.decode()
    assert "data-shared" not in page and 'id="share-open"' in page
