"""The sharing API (docs/api.md, "Sharing"): members, the session list's query, archiving, and authorship in
snapshots and run details. Who may call what is the matrix in tests/harness/test_authorization.py."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from orchestrator.models import Run, Session
from orchestrator.services.tokens import api_token_create
from tests.factories import shared_world

pytestmark = pytest.mark.django_db


class Caller:
    def __init__(self, user) -> None:
        self.client, self.auth = Client(), {"HTTP_AUTHORIZATION": f"Bearer {api_token_create(user=user)}"}

    def __call__(self, method: str, path: str, body=None):
        data = json.dumps(body) if body is not None else ""
        return self.client.generic(method, path, data, content_type="application/json", **self.auth)


@pytest.fixture
def world():
    return shared_world(live=True)


@pytest.fixture
def alice(world):
    return Caller(world.users["owner"])


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_members_are_listed_granted_changed_and_removed(world, alice):
    path = f"/api/sessions/{world.session.id}/members"
    assert alice("GET", path).json() == {"owner": "alice", "members": [
        {"kind": "user", "name": "bob", "role": "collaborator"},
        {"kind": "user", "name": "carol", "role": "viewer"},
        {"kind": "group", "name": "platform", "role": "collaborator"},
    ]}
    response = alice("PUT", f"{path}/users/mallory", {"role": "viewer"})
    assert response.status_code == 200
    assert response.json()["members"][-1] == {"kind": "user", "name": "mallory", "role": "viewer"}
    changed = alice("PUT", f"{path}/groups/platform/", {"role": "viewer"}).json()["members"]
    assert {"kind": "group", "name": "platform", "role": "viewer"} in changed
    response = alice("DELETE", f"{path}/users/bob")
    assert response.status_code == 200
    assert [m["name"] for m in response.json()["members"]] == ["carol", "platform", "mallory"]
    assert Caller(world.users["viewer"])("GET", path).json() == response.json()  # any member reads them


@pytest.mark.parametrize(("method", "tail", "body", "expected"), [
    ("PUT", "users/nobody", {"role": "viewer"}, (404, "unknown_member")),
    ("PUT", "groups/nobody", {"role": "viewer"}, (404, "unknown_member")),
    ("DELETE", "users/nobody", None, (404, "unknown_member")),
    ("PUT", "users/alice", {"role": "viewer"}, (400, "owner_is_member")),
    ("PUT", "users/mallory", {"role": "owner"}, (400, "invalid_field")),
    ("PUT", "users/a%00b", {"role": "viewer"}, (400, "invalid_field")),  # (PostgreSQL refuses a NUL)
    ("DELETE", "groups/%20", None, (400, "invalid_field")),
    ("PUT", "users/mallory", {}, (400, "missing_field")),
    ("PUT", "users/mallory", None, (400, "invalid_json")),
    ("POST", "users/mallory", {"role": "viewer"}, (405, "method_not_allowed")),
])
def test_member_refusals(world, alice, method, tail, body, expected):
    before = alice("GET", f"/api/sessions/{world.session.id}/members").json()
    assert error(alice(method, f"/api/sessions/{world.session.id}/members/{tail}", body)) == expected
    assert alice("GET", f"/api/sessions/{world.session.id}/members").json() == before


def test_archiving_moves_a_session_between_lists(world, alice):
    path = f"/api/sessions/{world.session.id}"
    assert alice("PATCH", path, {"archived": True}).status_code == 200
    assert Session.objects.get(pk=world.session.id).archived_at is not None
    assert alice("GET", "/api/sessions").json() == {"sessions": [], "next_cursor": None}
    [entry] = alice("GET", "/api/sessions?archived=true").json()["sessions"]
    assert entry["archived"] is True
    bob = Caller(world.users["collaborator"])
    assert bob("GET", "/api/sessions?archived=true").json()["sessions"][0]["archived"] is True  # for everyone
    assert alice("PATCH", path, {"archived": False, "title": "back"}).status_code == 200
    assert [s["title"] for s in alice("GET", "/api/sessions").json()["sessions"]] == ["back"]
    assert error(alice("PATCH", path, {"archived": "yes"})) == (400, "invalid_field")


def test_list_query_parameters(world, alice):
    for _ in range(3):
        alice("POST", "/api/sessions", {"title": "another"})
    first = alice("GET", "/api/sessions?limit=2").json()
    assert len(first["sessions"]) == 2 and first["next_cursor"]
    rest = alice("GET", f"/api/sessions?limit=2&cursor={first['next_cursor']}").json()
    assert len(rest["sessions"]) == 2 and rest["next_cursor"] is None
    assert [s["title"] for s in alice("GET", "/api/sessions?q=FIRST+QUESTION").json()["sessions"]] == [
        "shared session"]
    assert len(alice("GET", "/api/sessions?scope=mine").json()["sessions"]) == 4
    bob = Caller(world.users["collaborator"])
    assert [s["role"] for s in bob("GET", "/api/sessions?scope=shared").json()["sessions"]] == ["collaborator"]
    assert bob("GET", "/api/sessions?scope=mine").json()["sessions"] == []
    for query in ("limit=0", "limit=101", "limit=x", "scope=nope", "archived=1", "cursor=%25%25"):
        assert error(alice("GET", f"/api/sessions?{query}"))[0] == 400, query


def test_snapshot_and_run_detail_say_who_did_what(world):
    bob, carol = Caller(world.users["collaborator"]), Caller(world.users["viewer"])
    assert bob("POST", f"/api/sessions/{world.session.id}/steer", {"text": "be brief"}).status_code == 202
    assert bob("POST", f"/api/approvals/{world.approval.id}", {"decision": "deny"}).json()["accepted"] is True
    assert bob("POST", f"/api/sessions/{world.session.id}/stop", {}).json()["accepted"] is True
    snapshot = carol("GET", f"/api/sessions/{world.session.id}").json()
    users = [(m["role"], m["author"]) for m in snapshot["messages"] if m["role"] == "user"]
    assert users == [("user", "alice"), ("user", None)]  # the factory's parked run's message has no author
    assert snapshot["steering"][0]["created_by"] == "bob"
    detail = carol("GET", f"/api/runs/{world.run.id}").json()
    assert detail["started_by"] == "alice"
    assert detail["approvals"][0]["decided_by"] == "bob"
    assert detail["stop"]["requested_by"] == "bob"


def test_a_collaborators_run_is_theirs(world):
    Run.objects.filter(pk=world.run.id).update(state="stopped", outcome="stopped")  # the parked run has ended
    alice = Caller(world.users["owner"])
    dave = Caller(world.users["group_member"])
    run_id = dave("POST", f"/api/sessions/{world.session.id}/runs", {"text": "from the team"}).json()["run_id"]
    snapshot = alice("GET", f"/api/sessions/{world.session.id}").json()
    assert snapshot["latest_run"]["started_by"] == "dave" and snapshot["latest_run"]["id"] == run_id
    assert snapshot["messages"][-1]["author"] == "dave"
