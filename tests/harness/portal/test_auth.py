"""The portal's login rule: pages redirect to the login page; htmx requests get a 401 htmx swaps nothing for
(harness/portal/auth.py) — never a login page inside a fragment."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.parametrize("path", ["/sessions/{id}/stop", "/sessions/{id}/send", "/sessions/{id}/steer"])
def test_an_htmx_command_without_a_login_gets_401_json(session, path):
    url = path.format(id=session.id)
    plain = Client().post(url, {"text": "hi"})
    assert plain.status_code == 302 and plain["Location"].startswith("/login/?next=")  # what htmx followed
    response = Client().post(url, {"text": "hi"}, **HTMX)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthenticated", "detail": "your login has expired: log in again"}


def test_a_logged_in_htmx_command_runs(session, user):
    client = Client()
    client.force_login(user)
    response = client.post(f"/sessions/{session.id}/stop", **HTMX)
    assert response.status_code == 200 and 'id="composer"' in response.content.decode()


def test_pages_still_redirect_to_the_login(session):
    response = Client().get(f"/sessions/{session.id}/")
    assert response.status_code == 302 and response["Location"] == f"/login/?next=/sessions/{session.id}/"
