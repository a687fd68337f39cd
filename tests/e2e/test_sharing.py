"""A shared session in the browser: a viewer watches it live, and when the owner takes the access away the
page says so at once and stops reconnecting (its socket is closed with 4403); a collaborator's stop shows in
every tab; the owner shares and unshares from the Share dialog and sees who is here."""

from __future__ import annotations

from playwright.sync_api import expect

from .support import LONG_STREAM, Api, open_session, session_id_from_url, wait_connected


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


# Records every state the composer's button shows, however briefly (a stop can land in milliseconds: a poll
# could miss "stopping…"). Each socket message is its own task, so the observer sees each swap's result.
SEEN_BUTTONS = """
window.__seen = [];
const note = () => {
  const button = document.querySelector("#composer .composer-send");
  const text = button ? button.textContent.trim() : null;
  if (text && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
};
note();  // what it shows now
new MutationObserver(note).observe(document.getElementById("session-live"), {subtree: true, childList: true, characterData: true});
"""


def test_a_collaborators_stop_shows_stopping_in_every_tab_then_who_stopped(server, page, context_as):
    owner = Api(server.base_url, server.create_token("olga"))
    session_id = owner.new_session("olga's shared run")
    assert owner.call("PUT", f"/api/sessions/{session_id}/members/users/alice", {"role": "collaborator"})[0] == 200
    owner_page = context_as("olga").new_page()
    open_session(owner_page, server.base_url, session_id)
    open_session(page, server.base_url, session_id)  # alice, the collaborator
    tabs = (owner_page, page)
    for tab in tabs:  # both are here, and each sees the other
        expect(tab.locator("#presence")).to_have_text("Here now: alice, olga")
    expect(owner_page.locator("#share-open")).to_be_visible()
    expect(page.locator("#share-open")).to_have_count(0)  # the Share button is the owner's

    owner.run_start(session_id, LONG_STREAM)
    for tab in tabs:
        expect(tab.locator("#composer .composer-send")).to_have_text("stop")
        tab.evaluate(SEEN_BUTTONS)
        # In a shared session each message says who wrote it.
        expect(tab.locator("#transcript .msg-user .author")).to_have_text("olga")
    page.wait_for_function("document.querySelector('#transcript .msg-assistant .msg-text')?.textContent.length > 0")

    page.locator("#composer .composer-send").click()  # alice stops olga's run
    for tab in tabs:
        expect(tab.locator("#composer")).to_have_attribute("data-mode", "idle", timeout=20_000)
        assert tab.evaluate("window.__seen") == ["stop", "stopping…", "send"]
        expect(tab.locator("#run-status .stopped-by")).to_have_text("stopped by alice")
        tab.locator("#run-status").get_by_role("button", name="receipt").click()
        stopped_by = tab.locator("#receipt").locator("xpath=.//dt[normalize-space()='Stopped by']/following-sibling::dd[1]")
        expect(stopped_by).to_have_text("alice")


def test_the_owner_shares_from_the_dialog_sees_who_is_here_and_unshares(server, page, context_as):
    Api(server.base_url, server.create_token("pia"))  # (the user)
    owner_page = context_as("pia").new_page()
    owner_page.goto(f"{server.base_url}/")
    owner_page.get_by_role("button", name="New session").click()
    owner_page.wait_for_url(f"{server.base_url}/sessions/*/")
    session_id = session_id_from_url(owner_page.url)
    wait_connected(owner_page)
    expect(owner_page.locator("#presence")).to_be_hidden()  # alone: nobody else to show

    owner_page.get_by_role("button", name="Share").click()
    dialog = owner_page.get_by_role("dialog", name="Share this session")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".share-member")).to_have_count(1)  # pia, the owner
    dialog.get_by_label("User or group name").fill("nobody")
    dialog.get_by_role("button", name="Add").click()
    expect(dialog.get_by_role("alert")).to_have_text("No user named 'nobody'")
    expect(dialog.get_by_label("User or group name")).to_have_value("nobody")  # kept, to correct
    dialog.get_by_label("User or group name").fill("alice")
    dialog.get_by_label("Role", exact=True).select_option("viewer")
    dialog.get_by_role("button", name="Add").click()
    expect(dialog.get_by_label("Role of alice")).to_have_value("viewer")
    expect(dialog.locator(".share-error")).to_be_empty()  # the refusal is gone with its cause

    open_session(page, server.base_url, session_id)  # alice opens it
    expect(page.locator("#session-title")).to_be_visible()
    expect(page.locator("#composer #composer-hint")).to_have_text("Watching — only collaborators can send or stop")
    for tab in (owner_page, page):
        expect(tab.locator("#presence")).to_have_text("Here now: alice, pia")
    alice_row = dialog.locator('.share-member[data-user="alice"]')
    expect(alice_row.locator(".viewing")).to_have_text("viewing now")

    dialog.get_by_role("button", name="Remove alice").click()
    expect(page.get_by_role("alert")).to_have_text("You no longer have access to this session")
    expect(alice_row).to_have_count(0)
    expect(owner_page.locator("#presence")).to_be_hidden()  # alice left
    assert page.evaluate("window.__e2e.closes") == [4403]
