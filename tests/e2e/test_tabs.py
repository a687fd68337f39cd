"""Two tabs on one session stay in step: what one starts, the other sees; what one stops, both see stopped."""

from __future__ import annotations

from playwright.sync_api import expect

from .support import LONG_STREAM, open_session

ANSWER = "#transcript .msg-assistant"


def test_two_tabs_on_one_session_stay_in_sync_through_a_run_and_its_stop(context, server, api, session_id):
    tab_a, tab_b = context.new_page(), context.new_page()
    open_session(tab_a, server.base_url, session_id)
    open_session(tab_b, server.base_url, session_id)

    # Tab A sends; tab B, untouched, goes running and shows the answer streaming.
    tab_a.get_by_label("Message").fill(LONG_STREAM)
    tab_a.get_by_label("Message").press("Enter")
    for tab in (tab_a, tab_b):
        expect(tab.locator("#composer")).to_have_attribute("data-mode", "running")
        expect(tab.get_by_role("button", name="Stop the current run")).to_have_text("stop")
        expect(tab.locator("#transcript .msg-user .msg-text")).to_have_text(LONG_STREAM)
    tab_b.wait_for_function(f"document.querySelector('{ANSWER} .msg-text')?.textContent.length > 0")
    seen = len(tab_b.locator(f"{ANSWER} .msg-text").text_content())
    tab_b.wait_for_function(f"document.querySelector('{ANSWER} .msg-text').textContent.length > {seen}")
    expect(tab_b.locator(ANSWER)).to_have_attribute("data-status", "streaming")

    # Tab B stops it; both tabs come back to idle with the answer marked stopped.
    tab_b.get_by_role("button", name="Stop the current run").click()
    for tab in (tab_a, tab_b):
        expect(tab.locator("#composer")).to_have_attribute("data-mode", "idle")
        expect(tab.locator("#composer .composer-send")).to_have_text("send")
        expect(tab.locator(ANSWER)).to_have_attribute("data-status", "stopped")
        expect(tab.locator(f"{ANSWER} .tag-stopped")).to_be_visible()
        expect(tab.locator("#run-status .state")).to_have_text("Stopped")

    # Both show exactly the text that was kept — what the database says the user saw.
    kept = api.messages(session_id, "assistant")[-1]
    assert kept["status"] == "stopped" and kept["text"]
    for tab in (tab_a, tab_b):
        expect(tab.locator(f"{ANSWER} .msg-text")).to_have_text(kept["text"])
