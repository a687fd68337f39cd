"""The composer on a slow link (Chromium's network emulation, as a remote user has it): the send's response
and the socket's updates arrive in any order, and a sent message never comes back into the box nor is sent
twice."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .support import open_session

ANSWER = 'script:{"turns":[{"text":"ok %d"}]}'


def emulate_latency(page, milliseconds: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": milliseconds, "downloadThroughput": -1, "uploadThroughput": -1})


@pytest.mark.parametrize("latency_ms", [150, 400])
def test_sends_in_a_row_clear_the_box_once_and_send_once(page, server, api, session_id, latency_ms):
    open_session(page, server.base_url, session_id)
    emulate_latency(page, latency_ms)
    composer, box = page.locator("#composer"), page.locator("#composer-text")
    sends = 6
    for index in range(sends):
        text = ANSWER % index
        box.fill(text)
        with page.expect_response(lambda response: response.url.endswith("/send")):
            box.press("Enter")
        expect(page.locator("#transcript .msg-assistant .msg-text").filter(has_text=f"ok {index}")).to_be_visible()
        expect(composer).to_have_attribute("data-mode", "idle")
        # Everything this send caused has arrived (its response, the run's events): the box is empty.
        expect(box).to_have_value("")
        box.press("Enter")  # a second Enter on an empty box sends nothing
    user_texts = [m["text"] for m in api.messages(session_id, role="user")]
    assert user_texts == [ANSWER % index for index in range(sends)]
