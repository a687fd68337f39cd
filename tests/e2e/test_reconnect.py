"""A server restart in the middle of a run: the page says it is reconnecting, reconnects by itself, and ends
up showing the truth (the run resumed by recovery and finished) without being reloaded."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .support import SHORT_STREAM, logged_in_page, open_session, started_server

# Long enough to be mid-stream when the server goes away, short enough to stream again in full after the
# recovery (a resumed turn asks the model again from the start).
STREAM = 'script:{"turns":[{"words":600,"delay_ms":10}]}'

DOM_TRANSCRIPT = """
[...document.querySelectorAll('#transcript > li.msg')].map(li => ({
  role: li.classList.contains('msg-user') ? 'user' : li.classList.contains('msg-assistant') ? 'assistant'
      : li.classList.contains('msg-tool') ? 'tool' : 'system',
  status: li.dataset.status,
  text: li.querySelector('.msg-text').innerText,  // as read: answers are rendered Markdown
}))
"""


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own: it is killed and restarted, which the shared one must never be."""
    with started_server(tmp_path / "server") as instance:
        yield instance


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["crash", "graceful"])
def test_after_a_server_restart_the_page_reconnects_by_itself_and_shows_the_truth(browser, own_server, how):
    with logged_in_page(browser, own_server) as (page, api):
        session_id = api.new_session("restart")
        open_session(page, own_server.base_url, session_id)
        run_id = api.run_start(session_id, STREAM)
        page.wait_for_function("document.querySelector('#transcript .msg-assistant .msg-text')?.textContent.length > 0")
        expect(page.locator("#composer")).to_have_attribute("data-mode", "running")
        page.evaluate("window.__marker = 'set before the restart'")
        mark = page.locator("#connection")
        expect(mark).to_be_hidden()

        if how == "crash":
            own_server.crash()  # SIGKILL: no goodbye to the browser, the run's lease is left to lapse
        else:
            own_server.stop()  # SIGINT: a graceful shutdown (the browser still sees 1006, no closing handshake)
        expect(mark).to_be_visible()
        expect(mark).to_have_text("reconnecting…")

        own_server.start()  # same port, same database
        expect(mark).to_be_hidden(timeout=60_000)  # reconnected by itself
        assert page.evaluate("window.__e2e.opens") >= 2
        assert set(page.evaluate("window.__e2e.closes")) == {1006}  # abnormal closure: htmx-ext-ws retries

        # Recovery resumes the run once its lease lapses: it finishes, and the page shows it finished.
        expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=90_000)
        expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")
        expect(page.locator("#composer .composer-send")).to_have_text("send")
        assert api.run(run_id)["state"] == "completed"
        stored = [
            {"role": m["role"], "status": m["status"], "text": m["text"]} for m in api.messages(session_id)
        ]
        # The story the transcript tells: the answer cut by the restart (kept up to its last checkpoint,
        # marked interrupted), the notice that the model was asked again, then the whole answer.
        assert [(m["role"], m["status"]) for m in stored] == [
            ("user", "complete"), ("assistant", "error"), ("system", "complete"), ("assistant", "complete"),
        ]
        assert len(stored[-1]["text"].split()) == 600
        expect(page.locator("#transcript .msg-assistant").first.locator(".tag-error")).to_have_text("interrupted")
        expect(page.locator("#transcript .msg-system")).to_contain_text("the model was asked again")
        expect(page.locator("#transcript .msg-assistant").last).to_have_attribute("data-status", "complete")
        assert page.evaluate(DOM_TRANSCRIPT) == stored  # the page converged to exactly what was stored

        # Without a reload: the same document, with the marker set before the restart.
        assert page.evaluate("window.__marker") == "set before the restart"
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert page.evaluate("performance.getEntriesByType('navigation')[0].type") == "navigate"


def test_a_clean_close_is_reconnected_too_and_the_page_catches_up(page, server, api, session_id):
    """htmx-ext-ws retries only after 1006/1011/1012/1013; a polite close (1001 "going away", as a proxy or a
    load balancer sends) is left to the page's own script. Messages sent meanwhile show up after it."""
    sockets = []

    def relay(ws):
        upstream = ws.connect_to_server()
        sockets.append((ws, upstream))

    page.route_web_socket("**/ws/sessions/**", relay)
    open_session(page, server.base_url, session_id)
    page.evaluate("window.__marker = 'set before the close'")
    mark = page.locator("#connection")

    page_side, server_side = sockets[0]
    page_side.close(code=1001, reason="going away")
    server_side.close()
    expect(mark).to_be_visible()
    api.run_start(session_id, SHORT_STREAM)  # the truth moves on while the page is away

    expect(mark).to_be_hidden()
    expect(page.locator("#transcript .msg-user .msg-text")).to_have_text(SHORT_STREAM)
    expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")
    kept = api.messages(session_id, "assistant")[-1]["text"]
    expect(page.locator("#transcript .msg-assistant .msg-text")).to_have_text(kept)
    assert page.evaluate("window.__e2e.closes") == [1001]
    assert len(sockets) == 2 and page.evaluate("window.__e2e.opens") == 2
    assert page.evaluate("window.__marker") == "set before the close"  # no reload
