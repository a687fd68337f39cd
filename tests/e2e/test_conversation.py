"""The first thing a user does: log in, make a session, send a message, watch the answer stream in."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .support import PASSWORD, SHORT_STREAM, USERNAME, VIEWPORT, WS_PROBE, login, session_id_from_url, wait_connected

MESSAGE_TEXT = "#transcript .msg-assistant .msg-text"


def test_log_in_create_a_session_send_with_enter_and_watch_the_answer_stream(browser, server, api):
    context = browser.new_context(viewport=VIEWPORT)  # no stored login: the real form
    context.add_init_script(WS_PROBE)
    try:
        page = context.new_page()
        page.goto(f"{server.base_url}/")
        expect(page).to_have_url(re.compile(r"/login/"))  # the portal asks to log in first
        login(page, server.base_url, USERNAME, PASSWORD)

        page.get_by_role("button", name="New session").click()
        page.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}/$"))
        session_id = session_id_from_url(page.url)
        wait_connected(page)
        composer = page.locator("#composer")
        expect(composer).to_have_attribute("data-mode", "idle")
        expect(page.locator("#run-status")).to_contain_text("No run yet")

        box = page.get_by_label("Message")
        box.fill(SHORT_STREAM)
        sends = []
        page.on("request", lambda r: sends.append(r) if r.method == "POST" and r.url.endswith("/send") else None)
        box.press("Enter")

        # The user's message is there; the composer is running, its draft cleared by the successful send.
        expect(page.locator("#transcript .msg-user .msg-text")).to_have_text(SHORT_STREAM)
        expect(composer).to_have_attribute("data-mode", "running")
        expect(box).to_have_value("")
        assert len(sends) == 1

        # The answer streams in: its text grows between two observations while it is still being written.
        answer = page.locator("#transcript .msg-assistant")
        page.wait_for_function(f"document.querySelector('{MESSAGE_TEXT}')?.textContent.length > 0")
        first = len(page.locator(MESSAGE_TEXT).text_content())
        expect(answer).to_have_attribute("data-status", "streaming")
        page.wait_for_function(f"document.querySelector('{MESSAGE_TEXT}').textContent.length > {first}")
        second = len(page.locator(MESSAGE_TEXT).text_content())
        assert 0 < first < second

        # Then the run completes and the composer is idle again.
        expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
        expect(composer).to_have_attribute("data-mode", "idle")
        expect(answer).to_have_attribute("data-status", "complete")
        expect(page.locator("#composer .composer-send")).to_have_text("send")
        text = page.locator(MESSAGE_TEXT).inner_text()  # as a reader sees it: the answer is one paragraph
        assert len(text.split()) == 400
        assert text == api.messages(session_id, "assistant")[-1]["text"]  # the page shows what was stored
    finally:
        context.close()
