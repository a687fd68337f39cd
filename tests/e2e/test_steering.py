"""Steering a live run from the page: the form is offered while a run is in flight."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .support import LONG_STREAM, open_session

TWO_TURNS = 'script:{"turns":[{"words":600,"delay_ms":10},{"text":"second turn"}]}'


def test_the_steer_form_appears_when_a_run_starts_without_a_reload(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    expect(page.get_by_label("Steer the run")).to_have_count(0)  # idle: nothing to steer
    page.get_by_label("Message").fill(TWO_TURNS)
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#composer .composer-send")).to_have_text("stop")
    expect(page.get_by_label("Steer the run")).to_be_visible(timeout=5_000)


def test_a_steering_message_is_queued_then_applied_as_the_next_turn(page, server, api, session_id):
    run_id = api.run_start(session_id, TWO_TURNS)
    open_session(page, server.base_url, session_id)  # loaded while the run is live: the form is there
    expect(page.locator("#composer .composer-send")).to_have_text("stop")
    page.get_by_label("Steer the run").fill("be brief")
    page.get_by_role("button", name="steer", exact=True).click()
    expect(page.locator("#steering .steer-queued")).to_have_text("Queued for the next turn: be brief")

    expect(page.locator("#run-status .state")).to_have_text("Completed", timeout=30_000)
    users = page.locator("#transcript .msg-user .msg-text")
    expect(users).to_have_count(2)
    expect(users.last).to_have_text("be brief")  # applied: it became the next turn's user message
    expect(page.locator("#transcript .msg-assistant .msg-text").last).to_have_text("second turn")
    expect(page.locator("#steering .steer")).to_have_count(0)  # nothing left queued
    expect(page.get_by_label("Steer the run")).to_have_count(0)  # and no form once the run is over
    assert api.run(run_id)["turn_count"] == 2


def test_esc_while_typing_a_steering_message_does_not_stop_the_run(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    run_id = api.run_start(session_id, LONG_STREAM)
    steer = page.locator("#steer-text")
    steer.fill("half a thought")
    steer.press("Escape")
    expect(steer).not_to_be_focused()  # Esc leaves the box …
    expect(steer).to_have_value("half a thought")  # … keeps the draft …
    assert api.run(run_id)["stop_requested"] is False  # … and the run goes on
    page.locator("#composer-text").press("Escape")  # from the composer, Esc stops it (as always)
    expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")
    assert api.run(run_id)["state"] == "stopped"


def test_a_steering_draft_survives_the_run_moving_on(page, server, api, session_id):
    """Every run.state re-renders the steering box; what is being typed in it is kept (and its focus)."""
    turns = ",".join(['{"calls":[{"name":"sleep","arguments":{"seconds":0.3}}]}'] * 12)
    open_session(page, server.base_url, session_id)
    api.run_start(session_id, f'script:{{"turns":[{turns}]}}')
    steer = page.get_by_label("Steer the run")
    steer.fill("a thought in progress")
    status = page.locator("#run-status .turns")
    expect(status).to_have_text(re.compile(r"turn [1-9]"))
    turn = int(re.search(r"turn (\d+)", status.text_content()).group(1))
    page.wait_for_function(
        "least => Number((document.querySelector('#run-status .turns').textContent.match(/turn (\\d+)/) || [])[1]) >= least",
        arg=turn + 2)  # several re-renders later
    expect(steer).to_have_value("a thought in progress")
    expect(steer).to_be_focused()
