"""The session page's upload control and Files panel (harness/portal/files.py): what the fragment lists, that
hostile names are escaped in the page and encoded in the links, and who gets it."""

from __future__ import annotations

import html
import io
from urllib.parse import unquote

import pytest
from django.test import Client

from orchestrator.engine.workspace import session_workspace
from orchestrator.services.uploads import file_upload
from tests.factories import shared_world

pytestmark = pytest.mark.django_db


def browser_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_has_the_upload_control_and_loads_the_files_panel(user, session):
    page = browser_of(user).get(f"/sessions/{session.id}/").content.decode()
    assert '<button type="button" id="upload-button" class="upload-button">Upload file</button>' in page
    assert f'data-upload-url="/api/sessions/{session.id}/files"' in page
    assert f'hx-get="/sessions/{session.id}/files" hx-trigger="load, files-changed from:body"' in page
    assert 'src="/static/js/uploads.js"' in page


def test_the_panel_lists_files_with_escaped_names_and_encoded_links(user, session):
    file_upload(session_id=session.id, user=user, name='<b>"x" & y?.html', content=io.BytesIO(b"<p>hi</p>"))
    (session_workspace(session.id) / "out").mkdir()
    (session_workspace(session.id) / "out" / "50% #1.txt").write_text("agent")
    panel = browser_of(user).get(f"/sessions/{session.id}/files").content.decode()
    assert "<b>" not in panel and "&lt;b&gt;&quot;x&quot; &amp; y?.html" in panel
    assert "9 bytes · uploaded by alice" in panel and "5 bytes</span>" in panel
    hrefs = [html.unescape(part.split('"', 1)[0]) for part in panel.split('href="')[1:]]
    assert sorted(unquote(href) for href in hrefs) == sorted([
        f'/api/sessions/{session.id}/files/<b>"x" & y?.html', f"/api/sessions/{session.id}/files/out/50% #1.txt"])
    assert all("?" not in href and "#" not in href and '"' not in href for href in hrefs)
    for href in hrefs:
        assert browser_of(user).get(href).status_code == 200


def test_the_panel_is_for_anyone_who_can_view():
    world = shared_world(live=False)
    path = f"/sessions/{world.session.id}/files"
    assert browser_of(world.users["viewer"]).get(path).status_code == 200
    assert browser_of(world.users["non_member"]).get(path).status_code == 404
    assert "No files yet" in browser_of(world.users["owner"]).get(path).content.decode()
