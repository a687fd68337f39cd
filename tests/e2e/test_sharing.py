"""A shared session in the browser: a viewer watches it live, and when the owner takes the access away the
page says so at once and stops reconnecting (its socket is closed with 4403)."""

from __future__ import annotations

from playwright.sync_api import expect

from .support import Api, open_session


def test_a_viewer_whose_access_is_taken_away_is_told_and_the_page_stays_closed(server, page):
    owner = Api(server.base_url, server.create_token("owen"))
    session_id = owner.new_session("owen's shared session")
    member = f"/api/sessions/{session_id}/members/users/alice"
    assert owner.call("PUT", member, {"role": "viewer"})[0] == 200
    open_session(page, server.base_url, session_id)  # alice, logged in, sees owen's session
    expect(page.locator("#session-title")).to_have_text("owen's shared session")

    assert owner.call("DELETE", member)[0] == 200
    expect(page.get_by_role("alert")).to_have_text("You no longer have access to this session")
    # The live part (and with it the socket's element) is gone, so nothing reconnects it.
    expect(page.locator("#session-live")).to_have_count(0)
    assert page.evaluate("window.__e2e.closes") == [4403]
    assert page.evaluate("window.__e2e.opens") == 1
