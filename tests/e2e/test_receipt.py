"""The receipt is one click away from the status line once a run has ended."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .support import LONG_STREAM, USERNAME, open_session


def test_the_receipt_of_a_stopped_run_shows_the_outcome_and_the_stop_latency(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    run_id = api.run_start(session_id, LONG_STREAM)
    receipt_link = page.locator("#run-status").get_by_role("button", name="receipt")
    expect(page.locator("#composer .composer-send")).to_have_text("stop")
    expect(receipt_link).to_have_count(0)  # no receipt while the run is live
    page.wait_for_function("document.querySelector('#transcript .msg-assistant .msg-text')?.textContent.length > 0")
    page.locator("#composer .composer-send").click()
    expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")

    receipt_link.click()
    panel = page.locator("#receipt .receipt")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading")).to_have_text("Receipt — stopped")

    def detail(term: str):
        return panel.locator(f"xpath=.//dt[normalize-space()='{term}']/following-sibling::dd[1]")

    expect(detail("Stopped by")).to_have_text(USERNAME)
    expect(detail("Stop latency")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
    expect(detail("Turns")).to_have_text("1")
    latency = float(detail("Stop latency").text_content().removesuffix(" ms"))
    assert abs(latency - api.run(run_id)["stop"]["latency_ms"]) <= 0.05 + 1e-9  # the stored figure, rounded
