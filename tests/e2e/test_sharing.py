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


def test_a_viewer_watches_a_run_and_its_stop_but_cannot_send_steer_or_stop(server, page):
    from .support import LONG_STREAM

    owner = Api(server.base_url, server.create_token("wanda"))
    session_id = owner.new_session("wanda's run")
    member = f"/api/sessions/{session_id}/members/users/alice"
    assert owner.call("PUT", member, {"role": "viewer"})[0] == 200
    open_session(page, server.base_url, session_id)
    composer = page.locator("#composer")
    expect(composer.locator("#composer-hint")).to_have_text("Watching — only collaborators can send or stop")
    expect(page.get_by_label("Message")).not_to_be_editable()
    expect(composer.locator(".composer-send")).to_be_disabled()

    owner.run_start(session_id, LONG_STREAM)
    expect(composer).to_have_attribute("data-mode", "running")  # the viewer sees the run …
    expect(composer.locator(".composer-send")).to_have_text("stop")
    expect(composer.locator(".composer-send")).to_be_disabled()  # … but has no stop to press
    expect(page.locator("#steering")).to_be_attached()
    expect(page.get_by_label("Steer the run")).to_be_hidden()

    owner.stop(session_id)  # the owner stops it: the viewer's tab follows to the end
    expect(composer).to_have_attribute("data-mode", "idle", timeout=20_000)
    expect(page.get_by_role("button", name="Edit")).to_have_count(0)  # nothing to edit or regenerate either
    expect(page.get_by_role("button", name="Regenerate")).to_have_count(0)

    assert owner.call("PUT", member, {"role": "collaborator"})[0] == 200  # promoted: the full composer
    open_session(page, server.base_url, session_id)
    expect(page.get_by_label("Message")).to_be_editable()
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()


def test_the_session_page_offers_its_export_to_a_viewer_as_downloads(server, page):
    owner = Api(server.base_url, server.create_token("xena"))
    session_id = owner.new_session("xena's notes")
    assert owner.call("PUT", f"/api/sessions/{session_id}/members/users/alice", {"role": "viewer"})[0] == 200
    open_session(page, server.base_url, session_id)
    for name, kind, start in (("Export Markdown", "text/markdown", b"# xena's notes"), ("Export JSON", "application/json", b"{")):
        with page.expect_download() as download:
            page.get_by_role("link", name=name).click()
        path = download.value.path()
        with open(path, "rb") as exported:
            assert exported.read().startswith(start), name
        assert download.value.suggested_filename.startswith(f"session-{session_id}."), kind
