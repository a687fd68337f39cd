"""A database that cannot be reached (PostgreSQL restarting, its connections killed) is a 503 each client
understands — JSON on the API and for htmx, a short page otherwise, an error frame on the JSON socket —
never a 500 or a dropped socket. (The outage is simulated where the first query would fail; the scale-out
suite runs real servers.)"""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client

from harness import client_commands
from harness.api import auth as api_auth
from orchestrator import permissions

pytestmark = pytest.mark.django_db


def unreachable(*args, **kwargs):
    raise OperationalError("server closed the connection unexpectedly")


def test_the_api_answers_503_store_unavailable(token, session, monkeypatch):
    client = Client(raise_request_exception=False)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/api/sessions", **headers).status_code == 200
    monkeypatch.setattr(api_auth, "user_for_token", unreachable)  # bearer authentication's first query
    for method, path in (("get", "/api/sessions"), ("post", f"/api/sessions/{session.id}/stop")):
        response = getattr(client, method)(path, **headers)
        assert response.status_code == 503 and response["Retry-After"] == "1"
        assert response.json() == {"error": "store_unavailable",
                                   "detail": "the database is unavailable for a moment: nothing was changed; retry"}


def test_the_portal_answers_htmx_with_json_and_pages_with_a_page(user, session, monkeypatch):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    monkeypatch.setattr(permissions, "session_for", unreachable)  # a portal view's first query
    stop = client.post(f"/sessions/{session.id}/stop", HTTP_HX_REQUEST="true")
    assert stop.status_code == 503 and stop.json()["error"] == "store_unavailable"  # the composer's retry state
    page = client.get(f"/sessions/{session.id}/")
    assert page.status_code == 503 and b"Unavailable for a moment" in page.content


@pytest.mark.django_db(transaction=True)
async def test_the_json_socket_answers_an_error_frame_and_stays_open(session, token, monkeypatch):
    from tests.harness.ws_api.test_consumer import assert_still_open, open_socket, request

    monkeypatch.setattr(client_commands, "start", unreachable)
    async with open_socket(session.id, token) as (communicator, _):
        answer, _ = await request(communicator, {"type": "run.start", "request_id": "r", "text": "hi"})
        assert answer == {"type": "error", "code": "store_unavailable",
                          "detail": "the database is unavailable for a moment: nothing was changed; retry",
                          "http_status": 503, "request_id": "r", "command": "run.start"}
        await assert_still_open(communicator)
