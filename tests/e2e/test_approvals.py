"""Approval cards: decided from either tab, closed by a stop, and safe with hostile, long arguments."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from .support import USERNAME, open_session


def shell_script(command: str) -> str:
    turns = [{"calls": [{"name": "shell", "arguments": {"command": command}}]}, {"text": "done"}]
    return "script:" + json.dumps({"turns": turns})


def two_tabs(context, server, session_id):
    tabs = context.new_page(), context.new_page()
    for tab in tabs:
        open_session(tab, server.base_url, session_id)
    return tabs


def card(tab):
    return tab.locator("#approvals article.approval")


@pytest.mark.parametrize(
    ("decision", "status", "resolution", "tool_output"),
    [
        ("Approve", "approved", f"Approved by {USERNAME}", "approved-output"),
        ("Deny", "denied", f"Denied by {USERNAME}", f"denied by {USERNAME}"),
    ],
)
def test_a_decision_from_one_tab_resolves_the_card_in_both(context, server, api, session_id, decision, status,
                                                            resolution, tool_output):
    tab_a, tab_b = two_tabs(context, server, session_id)
    run_id = api.run_start(session_id, shell_script("echo approved-output"))

    for tab in (tab_a, tab_b):
        expect(card(tab)).to_have_attribute("data-status", "pending")
        expect(card(tab).locator("header strong")).to_have_text("shell")
        expect(card(tab).locator(".arguments")).to_contain_text('"command": "echo approved-output"')
        expect(card(tab).get_by_role("button", name="Approve")).to_be_enabled()
        expect(card(tab).get_by_role("button", name="Deny")).to_be_enabled()
        expect(tab.locator("#run-status .state")).to_have_text("Waiting for your approval")

    card(tab_a).get_by_role("button", name=decision).click()

    for tab in (tab_a, tab_b):
        expect(card(tab)).to_have_attribute("data-status", status)
        expect(card(tab).locator(".resolution")).to_have_text(resolution)
        expect(card(tab).get_by_role("button")).to_have_count(0)  # no live buttons on a decided card
        tool = tab.locator("#transcript .msg-tool")
        expect(tool.locator(".role")).to_have_text("tool · shell")
        expect(tool.locator(".msg-text")).to_contain_text(tool_output)
        expect(tab.locator("#run-status .state")).to_have_text("Completed")
        expect(tab.locator("#composer")).to_have_attribute("data-mode", "idle")
        expect(tab.locator("#transcript .msg-assistant .msg-text").last).to_have_text("done")
    assert api.run(run_id)["function_calls"][0]["status"] == ("succeeded" if status == "approved" else "denied")


def test_a_stop_while_an_approval_is_pending_closes_the_card_in_both_tabs(context, server, api, session_id):
    tab_a, tab_b = two_tabs(context, server, session_id)
    run_id = api.run_start(session_id, shell_script("echo never-run"))
    for tab in (tab_a, tab_b):
        expect(card(tab).get_by_role("button", name="Approve")).to_be_visible()

    tab_b.get_by_role("button", name="Stop the current run").click()
    for tab in (tab_a, tab_b):
        expect(card(tab)).to_have_attribute("data-status", "swept")
        expect(card(tab).locator(".resolution")).to_have_text("Closed: the run was stopped")
        expect(card(tab).get_by_role("button")).to_have_count(0)
        expect(tab.locator("#composer")).to_have_attribute("data-mode", "idle")
        expect(tab.locator("#run-status .state")).to_have_text("Stopped")
    for tab in (tab_a, tab_b):  # the call never ran: its tool message says so
        tool = tab.locator("#transcript .msg-tool")
        expect(tool.locator(".msg-text")).to_have_text(f"cancelled: run stopped by {USERNAME}")
        expect(tool.locator(".tag-stopped")).to_have_text("cancelled")
    call = api.run(run_id)["function_calls"][0]
    assert call["status"] == "cancelled" and call["started_at"] is None


def test_a_decision_on_a_card_already_closed_elsewhere_shows_the_truth(context, server, api, session_id):
    """A tab whose live updates were lost still shows a pending card; clicking Approve on it must not run
    the call, and the tab must then show the card as it really is."""
    tab = context.new_page()
    delivering = {"on": True}

    def relay(ws):  # a WebSocket that can silently stop delivering the server's messages to the page
        upstream = ws.connect_to_server()
        upstream.on_message(lambda message: ws.send(message) if delivering["on"] else None)
        ws.on_message(lambda message: upstream.send(message))

    tab.route_web_socket("**/ws/sessions/**", relay)
    open_session(tab, server.base_url, session_id)
    run_id = api.run_start(session_id, shell_script("echo too-late"))
    expect(card(tab).get_by_role("button", name="Approve")).to_be_visible()

    delivering["on"] = False
    api.stop(session_id)
    assert api.run(run_id)["approvals"][0]["status"] == "swept"
    expect(card(tab).get_by_role("button", name="Approve")).to_be_visible()  # stale, as intended

    card(tab).get_by_role("button", name="Approve").click()
    expect(card(tab)).to_have_attribute("data-status", "swept")
    expect(card(tab).locator(".resolution")).to_have_text("Closed: the run was stopped")
    expect(card(tab).get_by_role("button")).to_have_count(0)
    run = api.run(run_id)
    assert run["state"] == "stopped" and run["function_calls"][0]["status"] == "cancelled"


def test_long_hostile_arguments_are_escaped_and_truncated_with_show_more(context, server, api, session_id):
    tab = context.new_page()
    dialogs = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_session(tab, server.base_url, session_id)
    head = "echo <script>alert(1)</script> <img src=x onerror=alert(2)> "
    tail = "TAIL<script>alert(3)</script><b>bold?</b>"
    command = head + "x" * 600 + tail  # the preview is the first 400 characters of the JSON
    api.run_start(session_id, shell_script(command))

    arguments = card(tab).locator(".arguments")
    expect(arguments).to_contain_text("<script>alert(1)</script>")  # shown as text …
    expect(arguments).to_contain_text("<img src=x onerror=alert(2)>")
    assert tab.locator("#approvals script, #approvals img, #approvals b").count() == 0  # … never as markup

    more = arguments.locator("details")
    expect(more.locator("summary")).to_have_text("show more")
    expect(more).to_have_js_property("open", False)
    assert "TAIL" not in more.inner_text()  # the rest is folded away (innerText is what is rendered)
    preview = arguments.evaluate("e => e.firstChild.textContent")
    assert len(preview) == 401 and preview.endswith("…") and "TAIL" not in preview  # 400 characters, then "…"

    more.locator("summary").click()
    expect(more).to_have_js_property("open", True)
    assert "TAIL<script>alert(3)</script><b>bold?</b>" in more.inner_text()
    assert tab.locator("#approvals script, #approvals img, #approvals b").count() == 0
    assert json.loads(arguments.text_content().replace("…", "", 1).replace("show more", "", 1)) == {"command": command}
    # The user's message (the script itself) is escaped in the transcript too.
    expect(tab.locator("#transcript .msg-user .msg-text")).to_contain_text("<script>alert(1)</script>")
    assert tab.locator("#transcript script, #transcript img").count() == 0

    card(tab).get_by_role("button", name="Deny").click()
    expect(card(tab)).to_have_attribute("data-status", "denied")
    expect(tab.locator("#composer")).to_have_attribute("data-mode", "idle")
    assert dialogs == []


def test_the_tab_title_says_when_the_session_needs_an_approval(page, server, api, session_id):
    import re

    open_session(page, server.base_url, session_id)
    expect(page).to_have_title(re.compile(r"^the tab title .* · Agent harness$"))  # nothing pending yet
    api.run_start(session_id, shell_script("echo title"))
    expect(page).to_have_title(re.compile(r"^\(1\) Needs approval · the tab title"))
    card(page).get_by_role("button", name=re.compile("^Approve")).click()
    expect(page).to_have_title(re.compile(r"^the tab title .* · Agent harness$"))
