"""The session page's smaller promises: what the status announces, the favicon, and readable 404 and 403
pages in the portal's look with a way back."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory
from django.views.defaults import permission_denied

from orchestrator.models import RunState
from orchestrator.services.sessions import session_create
from tests.factories import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_status_announces_the_state_but_not_the_ticking_time(browser, session):
    make_run(session, RunState.ASSISTANT_STREAMING, started_at=None)
    page = browser.get(f"/sessions/{session.id}/").content.decode()
    status = page[page.index('id="run-status"'):]
    status = status[:status.index("</div>")]
    assert 'class="elapsed"' in status  # the timer is part of the status …
    live = status[status.index("aria-live"):]
    live = live[:live.index('class="elapsed"')]
    assert "state-assistant_streaming" in live and live.count("</span>") >= 2  # … but outside the live region
    assert status.count("aria-live") == 1 and 'aria-live="polite">' not in status[:status.index("<span")]


def test_the_page_has_a_favicon(browser, session):
    page = browser.get(f"/sessions/{session.id}/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    icon = browser.get("/static/favicon.svg")
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)


def test_another_users_session_is_a_readable_404(browser, other_user):
    theirs = session_create(owner=other_user, title="theirs")
    response = browser.get(f"/sessions/{theirs.id}/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "<h1>Not found</h1>" in page and 'href="/"' in page and "theirs" not in page


def test_a_form_posted_without_its_csrf_token_is_a_readable_403(user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post("/sessions/new", {"title": "forged"})
    assert response.status_code == 403
    page = response.content.decode()
    assert "<h1>Not allowed</h1>" in page and "security token" in page
    assert '<a href="/">Back to your sessions</a>' in page and "harness.css" in page  # the portal's look
    assert "CSRF verification failed" not in page  # not Django's own page


def test_a_permission_denied_is_the_portal_403(user):
    request = RequestFactory().get("/somewhere")
    request.user = user
    response = permission_denied(request, PermissionDenied("no"))
    page = response.content.decode()
    assert response.status_code == 403 and "<h1>Not allowed</h1>" in page and 'href="/"' in page


def test_the_api_answers_a_csrf_failure_in_json(user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post("/api/sessions", {"title": "forged"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"] == "csrf_failed"
