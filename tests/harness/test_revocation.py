"""Taking access away takes effect at once (issue #12): removing a member (through the API's service or the
admin's members inline), removing a user from a shared group (either side of the relation, or clearing it),
deactivating a user and deleting the session close that user's open sockets on the session within 1 s — the JSON socket and the portal's socket alike, with 4403 — and their
next request is refused. Sockets of users who keep their role stay open.

Every wait is a receive with a deadline (the 1 s is the deadline); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from devtools.api import call

from harness.asgi import application
from harness.groups import CLOSE_REVOKED
from orchestrator.models import SessionMember
from orchestrator.services.members import session_member_remove, session_member_set
from orchestrator.services.sessions import session_delete
from orchestrator.services.tokens import api_token_create
from tests.factories import TEAM, SharedWorld, shared_world
from tests.helpers import admin_remove_member, db, presence_until

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 1.0


@asynccontextmanager
async def json_socket(world: SharedWorld, role: str):
    token = await db(api_token_create, user=world.users[role])
    communicator = WebsocketCommunicator(application, f"/ws/api/sessions/{world.session.id}/",
                                         headers=[(b"authorization", f"Bearer {token}".encode())])
    assert (await communicator.connect(timeout=5))[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "session.snapshot"
    try:
        yield communicator
    finally:
        await communicator.disconnect()


@asynccontextmanager
async def portal_socket(world: SharedWorld, role: str):
    client = Client()
    await db(client.force_login, world.users[role])
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{world.session.id}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())],
    )
    assert (await communicator.connect(timeout=5))[0]
    await communicator.receive_from(timeout=5)  # the snapshot
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def closed_within(communicator: WebsocketCommunicator, seconds: float) -> int:
    """The close code, which must arrive within `seconds` (any frame before it is skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        message = await communicator.receive_output(timeout=max(0.0, deadline - loop.time()))
        if message["type"] == "websocket.close":
            return message["code"]


async def still_open(communicator: WebsocketCommunicator) -> bool:
    await communicator.send_json_to({"type": "ping", "request_id": "p"})
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame.get("type") == "ping.result":
            return True


def _remove_member(world: SharedWorld) -> None:
    session_member_remove(session_id=world.session.id, user=world.users["owner"], kind="user", name="carol")


def _staff_client() -> Client:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password="root-password-1"))
    return client


def _remove_member_in_admin(world: SharedWorld) -> None:
    member = SessionMember.objects.get(session=world.session, user=world.users["viewer"])
    assert admin_remove_member(_staff_client(), member).status_code == 302


def _unshare_group_in_admin(world: SharedWorld) -> None:
    member = SessionMember.objects.get(session=world.session, group__name=TEAM)
    assert admin_remove_member(_staff_client(), member).status_code == 302


def _leave_group(world: SharedWorld) -> None:
    world.users["group_member"].groups.remove(world.users["group_member"].groups.get(name=TEAM))


def _group_drops_user(world: SharedWorld) -> None:
    world.users["group_member"].groups.get(name=TEAM).user_set.remove(world.users["group_member"])


def _groups_cleared(world: SharedWorld) -> None:
    world.users["group_member"].groups.clear()


def _group_unshared(world: SharedWorld) -> None:
    session_member_remove(session_id=world.session.id, user=world.users["owner"], kind="group", name=TEAM)


def _deactivate(world: SharedWorld) -> None:
    user = world.users["viewer"]
    user.is_active = False
    user.save()


def _group_deleted(world: SharedWorld) -> None:
    world.users["group_member"].groups.get(name=TEAM).delete()


def _user_deleted(world: SharedWorld) -> None:
    world.users["viewer"].delete()


REVOCATIONS: list[tuple[str, Callable[[SharedWorld], None], str]] = [
    ("member removed", _remove_member, "viewer"),
    ("member removed in the admin", _remove_member_in_admin, "viewer"),
    ("group unshared in the admin", _unshare_group_in_admin, "group_member"),
    ("user leaves the group", _leave_group, "group_member"),
    ("group drops the user", _group_drops_user, "group_member"),
    ("user's groups cleared", _groups_cleared, "group_member"),
    ("group unshared", _group_unshared, "group_member"),
    ("group deleted", _group_deleted, "group_member"),
    ("user deactivated", _deactivate, "viewer"),
    ("user deleted", _user_deleted, "viewer"),
]


@pytest.mark.parametrize(("revoke", "role"), [(r[1], r[2]) for r in REVOCATIONS], ids=[r[0] for r in REVOCATIONS])
async def test_revoked_users_sockets_close_within_a_second_and_the_next_request_is_refused(revoke, role):
    world = await db(shared_world, live=False)
    async with (json_socket(world, role) as revoked_json, portal_socket(world, role) as revoked_portal,
                json_socket(world, "collaborator") as kept_json, portal_socket(world, "owner") as kept_portal):
        token = await db(api_token_create, user=world.users[role])
        await db(revoke, world)
        assert await closed_within(revoked_json, DEADLINE) == CLOSE_REVOKED
        assert await closed_within(revoked_portal, DEADLINE) == CLOSE_REVOKED
        assert await still_open(kept_json)  # the others keep watching
        # The owner's page stays open; who is here no longer counts the revoked user.
        await presence_until(kept_portal, [world.users["owner"].get_username()], timeout=DEADLINE)
        assert await kept_portal.receive_nothing(timeout=0.1)
    response = await db(Client().get, f"/api/sessions/{world.session.id}", HTTP_AUTHORIZATION=f"Bearer {token}")
    # Refused: a deactivated (or deleted) user's token no longer authenticates; anyone else no longer sees the
    # session.
    expected = (401, "unauthenticated") if revoke in (_deactivate, _user_deleted) else (404, "not_found")
    assert (response.status_code, response.json()["error"]) == expected


async def test_deleting_the_session_closes_every_socket_on_it():
    world = await db(shared_world, live=False)
    async with (json_socket(world, "owner") as owner_json, portal_socket(world, "viewer") as viewer_portal,
                json_socket(world, "group_member") as member_json):
        await db(session_delete, session_id=world.session.id, user=world.users["owner"])
        for communicator in (owner_json, viewer_portal, member_json):
            assert await closed_within(communicator, DEADLINE) == CLOSE_REVOKED


async def test_a_lower_role_keeps_the_socket_and_its_next_command_is_forbidden():
    world = await db(shared_world, live=False)
    async with json_socket(world, "collaborator") as socket:
        await db(session_member_set, session_id=world.session.id, user=world.users["owner"], kind="user",
                 name="bob", role="viewer")
        await socket.send_json_to({"type": "run.start", "request_id": 1, "text": "hello"})
        answer = await socket.receive_json_from(timeout=5)
        assert (answer["type"], answer["code"], answer["http_status"]) == ("error", "forbidden", 403)
        assert await still_open(socket)


async def test_a_member_with_another_grant_left_keeps_access():
    """dave is in the team (collaborator) and also a viewer by his own grant: the team's grant going leaves him
    the viewer's, and his sockets stay open."""
    world = await db(shared_world, live=False)
    await db(session_member_set, session_id=world.session.id, user=world.users["owner"], kind="user", name="dave",
             role="viewer")
    async with json_socket(world, "group_member") as socket:
        await db(_group_unshared, world)
        assert await still_open(socket)


# --- through a real server (Daphne, `manage.py serve`) ---------------------------------------------------------


def close_code_within(socket, seconds: float) -> int:
    """Read until the server closes the socket, within `seconds`; its close code."""
    deadline = time.monotonic() + seconds
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            socket.recv(timeout=max(0.001, deadline - time.monotonic()))
    return closed.value.rcvd.code


def test_over_daphne_removing_a_member_closes_both_their_sockets_within_a_second(serve_server):
    server = serve_server
    alice, bob = server.create_token("alice"), server.create_token("bob")
    cookie = server.login_cookie("bob")
    server.start()
    session_id = call(server.base_url, alice, "POST", "/api/sessions", {"title": "shared"})[1]["id"]
    members = f"/api/sessions/{session_id}/members/users/bob"
    assert call(server.base_url, alice, "PUT", members, {"role": "viewer"})[0] == 200
    with (ws_connect(server.ws_url(session_id), additional_headers={"Authorization": f"Bearer {bob}"}) as api_socket,
          ws_connect(server.portal_ws_url(session_id),
                     additional_headers={"Cookie": f"sessionid={cookie}", "Origin": server.base_url}) as page):
        assert json.loads(api_socket.recv(timeout=10))["type"] == "session.snapshot"
        assert 'id="composer"' in page.recv(timeout=10)
        started = time.monotonic()
        assert call(server.base_url, alice, "DELETE", members)[0] == 200
        assert close_code_within(api_socket, 1.0 - (time.monotonic() - started)) == CLOSE_REVOKED
        assert close_code_within(page, 1.0 - (time.monotonic() - started)) == CLOSE_REVOKED
    assert call(server.base_url, bob, "GET", f"/api/sessions/{session_id}")[1]["error"] == "not_found"
