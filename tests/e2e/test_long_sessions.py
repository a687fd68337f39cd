"""Long sessions: the page opens at the newest message, follows a streaming answer unless the reader scrolled
up ("Jump to latest" then takes them back), loads older messages a page at a time at the top without moving
what the reader looks at, and keeps the run's status, the composer and an approval card on screen."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from .support import LONG_STREAM, PHONE, VIEWPORT, HeldRoutes, open_session

FROM_BOTTOM = "document.documentElement.scrollHeight - window.innerHeight - window.scrollY"
STREAMING_TEXT = "#transcript .msg-assistant[data-status=streaming] .msg-text"


def jump_button(page):
    return page.get_by_role("button", name="Jump to latest")


def message(page, text: str):
    return page.get_by_role("list", name="Transcript").get_by_text(text, exact=True)


def scroll_up(page, pixels: int, viewport: dict = VIEWPORT) -> None:
    """The reader turns the mouse wheel over the transcript, and the scroll it starts comes to rest."""
    page.mouse.move(viewport["width"] / 2, viewport["height"] / 3)
    page.mouse.wheel(0, -pixels)
    wait_scroll_at_rest(page)


def wait_scroll_at_rest(page) -> None:
    # Chromium animates wheel scrolls: the position is read once it has not changed for ten frames.
    page.evaluate("window.__rest = {y: null, frames: 0}")
    page.wait_for_function(
        "() => { const r = window.__rest; r.frames = r.y === window.scrollY ? r.frames + 1 : 0;"
        " r.y = window.scrollY; return r.frames >= 10; }",
        polling="raf",
    )


def top_of(locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return box["y"]


def streamed_length(page) -> int:
    return page.evaluate(f"document.querySelector('{STREAMING_TEXT}')?.textContent.length ?? 0")


def wait_streamed_past(page, length: int) -> None:
    page.wait_for_function(
        f"(n) => (document.querySelector('{STREAMING_TEXT}')?.textContent.length ?? 0) > n", arg=length
    )


def at_bottom(page) -> bool:
    return page.evaluate(f"{FROM_BOTTOM} <= 8")


def test_a_long_session_opens_at_its_newest_message_with_only_the_newest_page(page, server, session_id):
    server.add_messages(session_id, 2000)
    open_session(page, server.base_url, session_id)
    transcript = page.get_by_role("list", name="Transcript")
    expect(message(page, "message 2000")).to_be_in_viewport()
    assert at_bottom(page)
    expect(transcript.locator(":scope > li.msg")).to_have_count(50)  # the newest page, not 2000 messages
    expect(message(page, "message 1951")).to_be_attached()
    expect(message(page, "message 1950")).not_to_be_attached()
    expect(transcript.get_by_role("button", name="Load older messages")).not_to_be_in_viewport()
    expect(jump_button(page)).to_be_hidden()
    expect(page.get_by_label("Message")).to_be_in_viewport()


def test_older_messages_load_at_the_top_and_the_first_visible_message_stays_in_place(page, server, session_id):
    server.add_messages(session_id, 160)
    held = HeldRoutes()
    page.route(re.compile(r"/messages\?before=\d+$"), held)
    open_session(page, server.base_url, session_id)

    for first, older in ((111, 61), (61, 11), (11, 1)):
        scroll_up(page, 100_000)  # to the top: the "load older" sentinel comes into view and asks
        held.wait(page)
        expect(message(page, f"message {older}")).not_to_be_attached()
        before = top_of(message(page, f"message {first}"))  # the first message on screen
        assert 0 <= before < VIEWPORT["height"] / 2
        expect(jump_button(page)).to_be_visible()  # (scrolled up: the way back down is offered)
        held.release()
        expect(message(page, f"message {older}")).to_be_attached()
        assert abs(top_of(message(page, f"message {first}")) - before) <= 1  # it has not moved
        expect(message(page, f"message {older}")).not_to_be_in_viewport()  # the older page is above, unseen

    expect(page.get_by_role("button", name="Load older messages")).to_have_count(0)  # that was the first page
    expect(page.get_by_role("list", name="Transcript").locator(":scope > li.msg")).to_have_count(160)


def test_after_a_reconnect_the_older_pages_stay_and_so_does_the_reader(page, server, api, session_id):
    """The socket's snapshot carries the newest page only; a tab that reconnects keeps what it loaded above it."""
    server.add_messages(session_id, 120)
    sockets = []

    def relay(ws):
        sockets.append((ws, ws.connect_to_server()))

    page.route_web_socket("**/ws/sessions/**", relay)
    open_session(page, server.base_url, session_id)
    scroll_up(page, 100_000)
    expect(message(page, "message 21")).to_be_attached()  # the page before the newest
    scroll_up(page, 200)
    place = top_of(message(page, "message 71"))

    page_side, server_side = sockets[0]
    page_side.close(code=1001, reason="going away")
    server_side.close()
    page.wait_for_function("window.__e2e.opens === 2 && window.__e2e.messages >= 2")  # the new snapshot is in
    transcript = page.get_by_role("list", name="Transcript")
    expect(transcript.locator(":scope > li.msg")).to_have_count(100)
    expect(transcript.locator(":scope > li.older")).to_have_count(1)
    assert abs(top_of(message(page, "message 71")) - place) <= 1
    scroll_up(page, 100_000)  # and the next older page still loads
    expect(message(page, "message 1")).to_be_attached()


def test_the_view_follows_the_answer_until_the_reader_scrolls_up_then_jump_to_latest_follows_again(
        page, server, api, session_id):
    server.add_messages(session_id, 60)
    open_session(page, server.base_url, session_id)
    api.run_start(session_id, LONG_STREAM)
    stop = page.get_by_role("button", name="Stop the current run")

    # Following: however much the answer grows, the page stays at its bottom, the newest words in view.
    wait_streamed_past(page, 600)
    for _ in range(3):
        wait_streamed_past(page, streamed_length(page) + 150)
        assert at_bottom(page)
    expect(jump_button(page)).to_be_hidden()

    # The reader scrolls up: the view stays where they put it while the answer grows below.
    scroll_up(page, 500)
    expect(jump_button(page)).to_be_visible()
    place = page.evaluate("window.scrollY")
    wait_streamed_past(page, streamed_length(page) + 300)
    assert page.evaluate("window.scrollY") == place and not at_bottom(page)
    # The run's status and the composer stay on screen while scrolled up.
    expect(page.get_by_text("Writing", exact=True)).to_be_in_viewport()
    expect(stop).to_be_in_viewport(ratio=1)

    jump_button(page).click()
    expect(jump_button(page)).to_be_hidden()
    assert at_bottom(page)
    wait_streamed_past(page, streamed_length(page) + 150)
    assert at_bottom(page)  # following again
    stop.click()
    expect(page.get_by_text("Stopped", exact=True)).to_be_in_viewport()


def test_at_phone_size_the_approval_card_is_on_screen_while_the_run_waits(make_context, server, api, session_id):
    page = make_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    server.add_messages(session_id, 60)
    open_session(page, server.base_url, session_id)
    scroll_up(page, 2000, PHONE)  # reading back through the history
    expect(jump_button(page)).to_be_visible()

    turns = [{"calls": [{"name": "shell", "arguments": {"command": "echo phone-approved"}}]}, {"text": "done"}]
    api.run_start(session_id, "script:" + json.dumps({"turns": turns}))
    approve = page.get_by_role("button", name=re.compile(r"^Approve shell"))
    expect(approve).to_be_in_viewport(ratio=1)
    expect(page.get_by_role("button", name=re.compile(r"^Deny shell"))).to_be_in_viewport(ratio=1)
    expect(page.get_by_text("Waiting for your approval", exact=True)).to_be_in_viewport()
    # Nothing covers it (the sticky dock sits below the card): a tap at its centre lands on it.
    assert approve.evaluate(
        "(b) => { const r = b.getBoundingClientRect();"
        " return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === b; }"
    )
    # A page opened while the run waits shows the card straight away too.
    fresh = page.context.new_page()
    open_session(fresh, server.base_url, session_id)
    expect(fresh.get_by_role("button", name=re.compile(r"^Approve shell"))).to_be_in_viewport(ratio=1)
    fresh.close()

    approve.tap()
    expect(page.get_by_text("Completed", exact=True)).to_be_in_viewport()
    expect(message(page, "done")).to_be_in_viewport()
