"""The composer's one button: send → stop → stopping… → send, by mouse and keyboard, with failures."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .support import LONG_STREAM, PHONE, SHORT_STREAM, HeldRoutes, open_session

DRAFT = "a draft I have not sent yet"


def composer_parts(page):
    return page.locator("#composer"), page.locator("#composer .composer-send"), page.locator("#composer-text")


def rect(page, selector: str) -> dict:
    """The element's box, read in one go inside the page (a live swap cannot detach it half-way)."""
    box = page.evaluate(
        "(s) => { const e = document.querySelector(s); if (!e) return null; const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }",
        selector,
    )
    assert box is not None, f"{selector} is not on the page"
    return box


def button_width(page) -> float:
    return rect(page, "#composer .composer-send")["width"]


def wait_streaming(page) -> None:
    page.wait_for_function(
        "document.querySelector('#transcript .msg-assistant[data-status=streaming] .msg-text')?.textContent.length > 0"
    )


def test_the_button_morphs_idle_stop_stopping_idle_and_keeps_the_draft(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)

    # Idle: a submit button labelled "send", disabled until there is something to send.
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(button).to_have_attribute("type", "submit")
    expect(button).to_have_attribute("data-mode", "send")
    expect(button).to_have_text("send")
    expect(button).to_be_disabled()
    box.fill("   ")
    expect(button).to_be_disabled()  # whitespace is not a message
    box.fill("")
    box.press_sequentially(DRAFT)
    expect(button).to_be_enabled()
    idle_width = button_width(page)

    # A run started elsewhere (the API, same user): this tab goes running; the unsent draft stays.
    run_id = api.run_start(session_id, LONG_STREAM)
    expect(composer).to_have_attribute("data-mode", "running")
    expect(button).to_have_attribute("type", "button")
    expect(button).to_have_attribute("data-mode", "stop")
    expect(button).to_have_text("stop")
    expect(button).to_have_attribute("aria-label", "Stop the current run")
    expect(button).to_have_attribute("title", re.compile(r"\S"))
    expect(button).to_be_enabled()
    expect(box).to_have_attribute("readonly", "")
    expect(box).to_be_enabled()  # readonly, not disabled: still focusable, still readable
    expect(box).not_to_be_editable()
    expect(box).to_have_attribute("placeholder", re.compile(r"run is in flight", re.IGNORECASE))
    expect(box).to_have_value(DRAFT)
    wait_streaming(page)
    running_width = button_width(page)

    # Stop: "stopping…" is painted before the network answers — the request is held at the route until the
    # stopping state has been checked, and the server has not even heard of the stop by then.
    held = HeldRoutes()
    page.route("**/stop", held)
    with page.expect_request("**/stop"):
        button.click()
    expect(button).to_have_text("stopping…")
    expect(button).to_have_attribute("data-mode", "stopping")
    expect(button).to_have_attribute("aria-busy", "true")
    expect(button).to_be_disabled()
    expect(composer).to_have_attribute("data-mode", "stopping")
    held.wait(page)
    assert api.run(run_id)["stop_requested"] is False, "the stop reached the server before it was released"
    held.release()

    # The run really ends; the composer is idle again with the draft still there.
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(button).to_have_attribute("type", "submit")
    expect(button).to_have_text("send")
    expect(button).not_to_have_attribute("aria-busy", "true")
    expect(button).to_be_enabled()  # the kept draft can be sent
    expect(box).to_have_value(DRAFT)
    expect(box).to_be_editable()
    expect(page.locator("#transcript .msg-assistant")).to_have_attribute("data-status", "stopped")
    assert api.run(run_id)["state"] == "stopped"

    assert button_width(page) == idle_width == running_width  # stopping's width: see the test below


def test_enter_does_not_send_while_running_and_esc_stops_the_run(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)
    sends = []
    page.on("request", lambda r: sends.append(r.url) if r.method == "POST" and r.url.endswith("/send") else None)
    box.press_sequentially(DRAFT)
    run_id = api.run_start(session_id, LONG_STREAM)
    expect(composer).to_have_attribute("data-mode", "running")
    wait_streaming(page)

    # Enter in the (read-only) composer with a non-empty draft, and a scripted form submission: nothing
    # is sent. Then Esc: its stop request is issued after anything Enter could have caused, so once it is
    # seen, a /send would have been seen too.
    box.focus()
    box.press("Enter")
    page.evaluate("document.getElementById('composer').requestSubmit()")
    with page.expect_request("**/stop"):
        page.keyboard.press("Escape")
    assert sends == []
    expect(box).to_have_value(DRAFT)  # Enter inserted no newline either

    expect(composer).to_have_attribute("data-mode", "idle")
    assistant = page.locator("#transcript .msg-assistant")
    expect(assistant).to_have_attribute("data-status", "stopped")
    expect(assistant.locator(".tag-stopped")).to_have_text("stopped")
    expect(page.locator("#transcript .msg-user")).to_have_count(1)
    assert [m["run_id"] for m in api.messages(session_id, "user")] == [run_id]
    assert api.run(run_id)["state"] == "stopped"
    assert sends == []


def test_a_failed_stop_returns_to_stop_with_a_visible_error_and_a_retry_works(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    composer, button, _ = composer_parts(page)
    error = page.locator("#composer .composer-error")
    run_id = api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_attribute("data-mode", "stop")
    wait_streaming(page)

    def expect_reverted(message):
        expect(error).to_have_text(message)
        expect(error).to_be_visible()
        expect(button).to_have_attribute("data-mode", "stop")
        expect(button).to_have_text("stop")
        expect(button).to_be_enabled()
        expect(button).not_to_have_attribute("aria-busy", "true")
        expect(composer).to_have_attribute("data-mode", "running")

    # A network error.
    page.route("**/stop", lambda route: route.abort())
    button.click()
    expect_reverted(re.compile(r"Stop failed \(network error\)"))

    # A server error.
    page.unroute("**/stop")
    page.route("**/stop", lambda route: route.fulfill(status=500, body="boom"))
    button.click()
    expect_reverted(re.compile(r"Stop failed \(HTTP 500\)"))
    assert api.run(run_id)["stop_requested"] is False  # neither attempt reached the engine: still running
    expect(page.locator("#transcript .msg-assistant")).to_have_attribute("data-status", "streaming")

    # The network is back: the same button stops the run, and the error is gone.
    page.unroute("**/stop")
    button.click()
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(error).to_be_empty()
    expect(error).to_be_hidden()
    expect(page.locator("#transcript .msg-assistant")).to_have_attribute("data-status", "stopped")
    assert api.run(run_id)["state"] == "stopped"


def test_the_stop_button_is_reachable_with_tab_and_works_from_the_keyboard(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)
    api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_attribute("data-mode", "stop")
    wait_streaming(page)

    box.focus()
    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")  # Enter on a focused button clicks it
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(page.locator("#transcript .msg-assistant")).to_have_attribute("data-status", "stopped")

    # And from the top of the page, Tab reaches it too (it is in the tab order, not only the last stop).
    api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_attribute("data-mode", "stop")
    page.locator("body").focus()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement?.classList.contains('composer-send')"):
            break
    expect(button).to_be_focused()
    expect(button).to_have_attribute("data-mode", "stop")


def test_at_phone_width_the_composer_and_its_button_fit_and_stay_in_view(make_context, server, api, session_id):
    page = make_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    open_session(page, server.base_url, session_id)
    button = page.locator("#composer .composer-send")

    def assert_fits():
        for selector in ("#composer", "#composer .composer-send", "#composer-text"):
            box = rect(page, selector)
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (selector, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
        expect(button).to_be_in_viewport(ratio=1)  # wholly on screen, whatever the transcript's length

    expect(button).to_have_text("send")
    assert_fits()
    api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_text("stop")
    # Let the answer grow past the screen (the page follows it): the sticky composer keeps the stop button in view.
    page.wait_for_function(
        "document.getElementById('transcript').getBoundingClientRect().height > window.innerHeight"
    )
    assert_fits()
    button.click()
    expect(button).to_have_text("send")
    assert_fits()


def test_the_button_keeps_one_width_in_send_stop_and_stopping(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)
    box.fill(DRAFT)
    widths = {"send": button_width(page)}
    api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_text("stop")
    widths["stop"] = button_width(page)
    held = HeldRoutes()
    page.route("**/stop", held)
    button.click()
    expect(button).to_have_text("stopping…")
    held.wait(page)
    widths["stopping"] = button_width(page)
    held.release()
    expect(composer).to_have_attribute("data-mode", "idle")
    widths["send again"] = button_width(page)
    assert len(set(widths.values())) == 1, f"the button changes width: {widths}"


def test_stopping_stays_painted_while_the_stop_request_is_in_flight(page, server, api, session_id):
    """Run-state events keep arriving while a (slow) stop request is on its way; they must not repaint the
    button back to "stop" as if the click had not happened."""
    turns = ",".join(['{"calls":[{"name":"sleep","arguments":{"seconds":0.3}}]}'] * 15)
    open_session(page, server.base_url, session_id)
    composer, button, _ = composer_parts(page)
    run_id = api.run_start(session_id, f'script:{{"turns":[{turns}]}}')
    status = page.locator("#run-status .turns")
    expect(status).to_have_text(re.compile(r"turn [2-9]"))
    held = HeldRoutes()
    page.route("**/stop", held)
    button.click()
    expect(button).to_have_text("stopping…")
    held.wait(page)
    # Two more turns (each several run.state events, each re-rendering every tab's composer) while held.
    turn = int(re.search(r"turn (\d+)", status.text_content()).group(1))
    # At least two more turns (a busy page may render turn n+1 and n+3 but never n+2: wait for "≥", not "=").
    page.wait_for_function(
        "least => Number((document.querySelector('#run-status .turns').textContent.match(/turn (\\d+)/) || [])[1]) >= least",
        arg=turn + 2)
    assert api.run(run_id)["stop_requested"] is False
    try:
        expect(button).to_have_text("stopping…", timeout=1_000)
        expect(composer).to_have_attribute("data-mode", "stopping", timeout=1_000)
    finally:
        held.release()
    expect(composer).to_have_attribute("data-mode", "idle")
    assert api.run(run_id)["state"] == "stopped"


def test_a_long_unbroken_session_title_does_not_widen_the_page_at_phone_width(make_context, server, api):
    session_id = api.new_session("x" * 120)
    page = make_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    open_session(page, server.base_url, session_id)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.goto(f"{server.base_url}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_stop_after_the_login_expired_says_so_and_keeps_the_composer(page, server, api, session_id):
    """htmx follows a redirect to the login page and would swap that page into the composer; an htmx request
    without a login gets 401 instead, and the composer says the stop failed and how to log in again."""
    open_session(page, server.base_url, session_id)
    composer, button, _ = composer_parts(page)
    error = page.locator("#composer .composer-error")
    run_id = api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_attribute("data-mode", "stop")
    wait_streaming(page)

    page.context.clear_cookies(name="sessionid")  # the login expires; the page and its socket stay open
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    stop_url = f"{server.base_url}/sessions/{session_id}/stop"
    # The same request without HX-Request: redirected to the login page, which is what htmx used to swap in.
    plain = page.request.post(stop_url, headers={"X-CSRFToken": csrf}, max_redirects=0)
    assert plain.status == 302 and plain.headers["location"].startswith("/login/")

    button.click()
    expect(error).to_have_text("Stop failed: your login has expired — log in again.")
    expect(error.get_by_role("link", name="log in again")).to_have_attribute(
        "href", f"/login/?next=%2Fsessions%2F{session_id}%2F")
    expect(button).to_have_attribute("data-mode", "stop")
    expect(button).to_be_enabled()
    expect(composer).to_have_attribute("data-mode", "running")
    expect(page.locator("#composer input[name=password]")).to_have_count(0)  # no login page in the fragment
    assert api.run(run_id)["stop_requested"] is False  # and the page did not pretend it stopped

    error.get_by_role("link", name="log in again").click()
    expect(page.locator("input[name=password]")).to_be_visible()


def test_a_send_that_fails_puts_the_text_back_with_the_reason(page, server, api, session_id):
    """The box empties the moment a message is sent; if the send does not go through, the text comes back."""
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)
    error = page.locator("#composer .composer-error")

    page.route("**/send", lambda route: route.abort())
    box.fill("hello over a broken link")
    box.press("Enter")
    expect(error).to_have_text("Not sent (network error) — try again.")
    expect(box).to_have_value("hello over a broken link")
    expect(button).to_be_enabled()
    page.unroute("**/send")

    too_long = "é" * 20_000  # 40,000 bytes of UTF-8: within the box's 32,768 characters, over the server's bytes
    box.fill(too_long)
    box.press("Enter")
    expect(error).to_have_text("text is limited to 32768 bytes")
    expect(box).to_have_value(too_long)
    assert api.messages(session_id, role="user") == []  # neither reached the transcript

    box.fill("hello")
    box.press("Enter")
    expect(page.locator("#transcript .msg-user .msg-text")).to_have_text("hello")
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(box).to_have_value("")
    expect(error).to_be_empty()


def test_a_session_opens_ready_to_type(page, server, session_id):
    open_session(page, server.base_url, session_id)
    expect(page.locator("#composer-text")).to_be_focused()


def test_keyboard_stop_keeps_the_focus_in_the_composer_and_the_box_is_visibly_focused(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)
    outline = "(e) => getComputedStyle(e).outlineStyle"
    expect(box).to_be_focused()
    assert box.evaluate(outline) != "none"  # a visible focus ring
    api.run_start(session_id, LONG_STREAM)
    expect(button).to_have_attribute("data-mode", "stop")
    box.focus()
    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(box).to_be_focused()  # not <body>: a keyboard user types the next message straight away


@pytest.mark.parametrize("where", ["box", "stop button"])
def test_a_run_that_ends_by_itself_returns_the_focus_to_the_box_if_it_was_on_the_composer(page, server, api,
                                                                                         session_id, where):
    open_session(page, server.base_url, session_id)
    composer, button, box = composer_parts(page)
    box.fill(SHORT_STREAM)
    box.press("Enter")  # sent from the box: the focus stays there through the run
    expect(button).to_have_attribute("data-mode", "stop")
    expect(box).to_be_focused()
    if where == "stop button":
        page.keyboard.press("Tab")
        expect(button).to_be_focused()
    expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
    expect(composer).to_have_attribute("data-mode", "idle")
    expect(box).to_be_focused()  # ready for the next message


def test_touch_screens_get_a_placeholder_without_esc(make_context, server, api, session_id):
    page = make_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    open_session(page, server.base_url, session_id)
    api.run_start(session_id, LONG_STREAM)
    box = page.locator("#composer-text")
    expect(page.locator("#composer")).to_have_attribute("data-mode", "running")
    expect(box).to_have_attribute("placeholder", "A run is in flight — tap stop to stop it")


def test_a_long_title_stays_readable_at_phone_width(make_context, server, api):
    session_id = api.new_session("Refactor the billing export so that it handles refunds and partial captures")
    page = make_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    open_session(page, server.base_url, session_id)
    title = page.locator("#session-title")
    assert title.evaluate("(e) => e.getBoundingClientRect().width") >= 0.8 * (PHONE["width"] - 40)


def test_times_are_shown_in_the_readers_time_zone(make_context, server, api, session_id):
    page = make_context(timezone_id="Asia/Tokyo").new_page()
    page.goto(f"{server.base_url}/")
    time = page.locator(f"li:has(a[href='/sessions/{session_id}/']) time")
    utc = time.get_attribute("datetime")
    expect(time).not_to_contain_text("UTC")
    shown_in = "(zone, iso) => new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short', timeZone: zone})" \
               ".format(new Date(iso))"
    tokyo, utc_text = (page.evaluate(f"([zone, iso]) => ({shown_in})(zone, iso)", [zone, utc]) for zone in ("Asia/Tokyo", "UTC"))
    assert tokyo != utc_text  # nine hours apart
    expect(time).to_have_text(tokyo)
    assert utc.endswith("+00:00") or utc.endswith("Z")  # the attribute itself stays UTC
