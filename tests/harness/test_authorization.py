"""The authorization matrix of issue #12: every command and read, for the owner, a collaborator, a viewer, a member
of a group with the collaborator role, a non-member and an anonymous caller, through the HTTP API, the portal's
views, the JSON socket and the portal's socket. Each caller gets the documented answer, and a refused attempt
changes nothing (`tests.factories.session_state` before and after).

The one rule is `orchestrator/permissions.py`: view (read, watch) for every role, act (send, stop, steer,
decide, edit, regenerate) for collaborators and the owner, own (rename, model, archive, delete, members) for the
owner. No role: the session does not exist (404 `not_found`, stop `no_record`, socket close 4404). A role too
low: 403 `forbidden` (an error frame on the JSON socket, which stays open).

The admin's writes (a run's "Stop run" button, a session's members inline) answer to Django's staff permissions
instead, whatever the caller's role on the session: no staff flag is the admin's login page, staff without the
permission 403.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from harness.asgi import application
from orchestrator.services.tokens import api_token_create
from tests.factories import SHARED_ROLES, SharedWorld, session_state, shared_world
from tests.helpers import admin_member_removal, db

CALLERS = [*SHARED_ROLES, "anonymous"]
# What each caller may do: the role's reach ("view" < "act" < "own"); None: no role.
REACH = {"owner": 3, "collaborator": 2, "group_member": 2, "viewer": 1, "non_member": 0, "anonymous": None}
NEED = {"view": 1, "act": 2, "own": 3}


@dataclass(frozen=True)
class Action:
    name: str
    need: str
    method: str
    path: str  # formatted with the world: {sid}, {run}, {approval}
    body: Any = None
    live: bool = False  # needs a live run parked on an approval (else: an idle session)
    status: int = 200  # the answer when allowed


def _edit_body(world: SharedWorld) -> dict:
    return {"text": "changed question", "replace_from_message": world.latest_user_message.id}


HTTP_ACTIONS = [
    Action("read_session", "view", "GET", "/api/sessions/{sid}"),
    Action("read_run", "view", "GET", "/api/runs/{run}"),
    Action("read_members", "view", "GET", "/api/sessions/{sid}/members"),
    Action("start", "act", "POST", "/api/sessions/{sid}/runs", {"text": "hello"}, status=201),
    Action("edit", "act", "POST", "/api/sessions/{sid}/runs", _edit_body, status=201),
    Action("regenerate", "act", "POST", "/api/sessions/{sid}/runs",
           lambda w: {"replace_from_message": w.latest_user_message.id}, status=201),
    Action("stop", "act", "POST", "/api/sessions/{sid}/stop", {}, live=True),
    Action("steer", "act", "POST", "/api/sessions/{sid}/steer", {"text": "be brief"}, live=True, status=202),
    Action("approve", "act", "POST", "/api/approvals/{approval}", {"decision": "approve"}, live=True),
    Action("deny", "act", "POST", "/api/approvals/{approval}", {"decision": "deny"}, live=True),
    Action("list_files", "view", "GET", "/api/sessions/{sid}/files"),
    Action("upload", "act", "POST", "/api/sessions/{sid}/files?name=notes.json", {"a": 1}, status=201),
    Action("rename", "own", "PATCH", "/api/sessions/{sid}", {"title": "renamed"}),
    Action("choose_model", "own", "PATCH", "/api/sessions/{sid}", {"model": ""}),
    Action("archive", "own", "PATCH", "/api/sessions/{sid}", {"archived": True}),
    Action("delete", "own", "DELETE", "/api/sessions/{sid}"),
    Action("share", "own", "PUT", "/api/sessions/{sid}/members/users/mallory", {"role": "viewer"}),
    Action("reshare_group", "own", "PUT", "/api/sessions/{sid}/members/groups/platform", {"role": "viewer"}),
    Action("unshare", "own", "DELETE", "/api/sessions/{sid}/members/users/carol"),
]


def _format(world: SharedWorld, template: str) -> str:
    return template.format(sid=world.session.id, run=world.run.id,
                           approval=world.approval.id if world.approval else "none")


def _client(world: SharedWorld, caller: str) -> tuple[Client, dict]:
    if caller == "anonymous":
        return Client(), {}
    return Client(), {"HTTP_AUTHORIZATION": f"Bearer {api_token_create(user=world.users[caller])}"}


def _allowed(caller: str, need: str) -> bool:
    return REACH[caller] is not None and REACH[caller] >= NEED[need]


# --- HTTP API ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("action", HTTP_ACTIONS, ids=lambda a: a.name)
def test_http_api(caller, action):
    world = shared_world(live=action.live)
    client, auth = _client(world, caller)
    body = action.body(world) if callable(action.body) else action.body
    before = session_state(world.session.id)
    response = client.generic(action.method, _format(world, action.path),
                              json.dumps(body) if body is not None else "", content_type="application/json", **auth)
    answer = response.json()
    if caller == "anonymous":
        expected = (401, "unauthenticated")
    elif REACH[caller] == 0:
        expected = (200, "no_record") if action.name == "stop" else (404, "not_found")
    elif not _allowed(caller, action.need):
        expected = (403, "forbidden")
    else:
        assert response.status_code == action.status, answer
        assert answer.get("accepted", True) is True, answer
        return
    if expected[1] == "no_record":
        assert (response.status_code, answer) == (200, {"accepted": False, "reason": "no_record", "prior_state": None,
                                                         "run_id": None})
    else:
        assert (response.status_code, answer["error"]) == expected, answer
        assert set(answer) == {"error", "detail"} and answer["detail"]
    assert session_state(world.session.id) == before  # refused: nothing changed


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
def test_http_session_list(caller):
    world = shared_world(live=True)
    client, auth = _client(world, caller)
    response = client.get("/api/sessions", **auth)
    if caller == "anonymous":
        assert (response.status_code, response.json()["error"]) == (401, "unauthenticated")
        return
    listed = response.json()["sessions"]
    if caller == "non_member":
        assert listed == []
        return
    [entry] = listed
    role = {"group_member": "collaborator"}.get(caller, caller)
    assert (entry["id"], entry["role"], entry["owner"], entry["archived"]) == (str(world.session.id), role, "alice",
                                                                              False)
    assert entry["active_run"] == {"id": str(world.run.id), "state": "awaiting_approval", "stop_requested": False}


# --- portal views --------------------------------------------------------------------------------------------


PORTAL_ACTIONS = [
    Action("page", "view", "GET", "/sessions/{sid}/"),
    Action("receipt", "view", "GET", "/runs/{run}/receipt"),
    Action("files", "view", "GET", "/sessions/{sid}/files"),
    Action("send", "act", "POST", "/sessions/{sid}/send", {"text": "hello"}),
    Action("edit", "act", "POST", "/sessions/{sid}/send",
           lambda w: {"text": "changed", "replace_from_message": w.latest_user_message.id}),
    Action("regenerate", "act", "POST", "/sessions/{sid}/regenerate", lambda w: {"message_id": 10**9}),
    Action("stop", "act", "POST", "/sessions/{sid}/stop", {}, live=True),
    Action("steer", "act", "POST", "/sessions/{sid}/steer", {"text": "be brief"}, live=True),
    Action("decide", "act", "POST", "/approvals/{approval}/decide", {"decision": "deny"}, live=True),
    Action("rename", "own", "POST", "/sessions/{sid}/rename", {"title": "renamed"}, status=302),
    Action("choose_model", "own", "POST", "/sessions/{sid}/model", {"model": ""}),
    Action("delete", "own", "POST", "/sessions/{sid}/delete", {}, status=302),
]


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("action", PORTAL_ACTIONS, ids=lambda a: a.name)
def test_portal_views(caller, action):
    world = shared_world(live=action.live)
    client = Client()
    if caller != "anonymous":
        client.force_login(world.users[caller])
    body = action.body(world) if callable(action.body) else action.body
    before = session_state(world.session.id)
    path = _format(world, action.path)
    response = client.get(path) if action.method == "GET" else client.post(path, body)
    if caller == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    elif REACH[caller] == 0:
        assert response.status_code == 404
    elif not _allowed(caller, action.need):
        assert response.status_code == 403
    else:
        assert response.status_code == action.status
        if action.status == 302:
            assert response["Location"] == "/"
        return
    assert session_state(world.session.id) == before


# --- the JSON socket -----------------------------------------------------------------------------------------


SOCKET_COMMANDS = [
    # (command, need, live, frame body, the allowed answer's http_status)
    ("run.start", "act", False, {"text": "hello"}, 201),
    ("run.start", "act", False, "edit", 201),
    ("run.stop", "act", True, {}, 200),
    ("steer", "act", True, {"text": "be brief"}, 202),
    ("approval.decide", "act", True, "decide", 200),
    ("session.update", "own", False, {"title": "renamed"}, 200),
    ("session.update", "own", False, {"archived": True}, 200),
]


def _frame_body(world: SharedWorld, body) -> dict:
    if body == "edit":
        return _edit_body(world)
    if body == "decide":
        return {"approval_id": str(world.approval.id), "decision": "deny"}
    return body


async def _close_code(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    return message["code"]


def _token_headers(world: SharedWorld, caller: str) -> list:
    if caller == "anonymous":
        return []
    return [(b"authorization", f"Bearer {api_token_create(user=world.users[caller])}".encode())]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("command", SOCKET_COMMANDS, ids=lambda c: f"{c[0]}-{c[1]}-{c[3] if isinstance(c[3], str) else ','.join(c[3])}")
async def test_json_socket(caller, command):
    kind, need, live, body, status = command
    world = await db(shared_world, live=live)
    headers = await db(_token_headers, world, caller)
    communicator = WebsocketCommunicator(application, f"/ws/api/sessions/{world.session.id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        if REACH[caller] is None:
            assert await _close_code(communicator) == 4401
            return
        if REACH[caller] == 0:
            assert await _close_code(communicator) == 4404  # as for a session that does not exist
            return
        snapshot = await communicator.receive_json_from(timeout=5)
        assert snapshot["type"] == "session.snapshot"  # every role watches
        before = await db(session_state, world.session.id)
        await communicator.send_json_to({"type": kind, "request_id": 1, **_frame_body(world, body)})
        answer = await communicator.receive_json_from(timeout=5)
        if _allowed(caller, need):
            assert (answer["type"], answer["http_status"]) == (f"{kind}.result", status), answer
            assert answer.get("accepted", True) is True
            return
        assert (answer["type"], answer["code"], answer["http_status"], answer["command"]) == (
            "error", "forbidden", 403, kind), answer
        assert await db(session_state, world.session.id) == before
        await communicator.send_json_to({"type": "ping", "request_id": 2})  # the socket stays open
        assert await communicator.receive_json_from(timeout=5) == {"type": "ping.result", "request_id": 2}
    finally:
        await communicator.disconnect()


# --- the portal's socket -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("caller", CALLERS)
async def test_portal_socket(caller):
    world = await db(shared_world, live=True)
    headers = [(b"origin", b"http://127.0.0.1")]
    if caller != "anonymous":
        client = Client()
        await db(client.force_login, world.users[caller])
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    communicator = WebsocketCommunicator(application, f"/ws/sessions/{world.session.id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        if caller == "anonymous":
            assert await _close_code(communicator) == 4401
        elif caller == "non_member":
            assert await _close_code(communicator) == 4404
        else:
            snapshot = await communicator.receive_from(timeout=5)
            assert 'id="approvals"' in snapshot and "list the files" in snapshot  # the live session, watched
    finally:
        await communicator.disconnect()


# --- the admin -----------------------------------------------------------------------------------------------


# Staff holding the view permissions only, and staff who may also stop runs and remove members.
STAFF = {"staff_viewer": ("view_run", "view_session", "view_sessionmember"),
         "staff": ("view_run", "view_session", "view_sessionmember", "stop_run", "delete_sessionmember")}


def _admin_client(world: SharedWorld, caller: str) -> Client:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    client = Client()
    if caller in STAFF:
        staff = get_user_model().objects.create_user(username=caller, password=f"{caller}-password-1", is_staff=True)
        staff.user_permissions.set(Permission.objects.filter(content_type__app_label="orchestrator",
                                                             codename__in=STAFF[caller]))
        client.force_login(staff)
    elif caller != "anonymous":
        client.force_login(world.users[caller])
    return client


def _admin_request(world: SharedWorld, action: str) -> tuple[str, dict]:
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    from orchestrator.models import SessionMember

    if action == "stop_button":
        return reverse("admin:orchestrator_run_stop", args=[world.run.pk]), {}
    reader = Client()  # the page as a superuser reads it; the caller posts it
    reader.force_login(get_user_model().objects.create_superuser(username="root", password="root-password-1"))
    return admin_member_removal(reader, SessionMember.objects.get(session=world.session, user=world.users["viewer"]))


@pytest.mark.django_db
@pytest.mark.parametrize("caller", [*CALLERS, *STAFF])
@pytest.mark.parametrize("action", ["stop_button", "remove_member"])
def test_admin(caller, action):
    world = shared_world(live=True)
    client = _admin_client(world, caller)
    url, body = _admin_request(world, action)
    before = session_state(world.session.id)
    response = client.post(url, body)
    if caller == "staff":
        assert response.status_code == 302 and "/login/" not in response["Location"]
        assert session_state(world.session.id) != before  # stopped, or carol's grant gone
        return
    if caller == "staff_viewer":
        assert response.status_code == 403
    else:  # a session's owner is no one in the admin
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert session_state(world.session.id) == before
