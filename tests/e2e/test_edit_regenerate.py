"""Edit and Regenerate, as a person does them: the buttons found by role and name, what the transcript shows
after, and — through the scripted model's echo turn, which answers with the model's whole input — that the
replaced turn is not in the new run's input."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from .support import open_session


def script(*turns: dict, note: str = "") -> str:
    """A scripted-model message; `note` (ignored by the model) makes it recognisable in an echo."""
    return "script:" + json.dumps({"turns": list(turns), **({"note": note} if note else {})})


FIRST = script({"text": "the first answer"})
SLOW_ECHO = {"echo": True, "delay_ms": 60}  # ~2 s: long enough to see the page while the run is live


def user_texts(page):
    return page.locator("#transcript .msg-user .msg-text")


def answers(page):
    return page.locator("#transcript .msg-assistant")


def send(page, text: str) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def wait_answered(page, count: int) -> None:
    """Until the transcript holds `count` answers, the last one complete, and no run is live."""
    expect(answers(page)).to_have_count(count, timeout=30_000)
    expect(answers(page).last).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(page.locator("#composer")).to_have_attribute("data-mode", "idle", timeout=30_000)


def buttons(page):
    return page.get_by_role("button", name="Edit", exact=True), page.get_by_role("button", name="Regenerate",
                                                                                  exact=True)


def test_edit_replaces_the_last_turn_and_the_model_never_sees_it(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    send(page, FIRST)
    wait_answered(page, 1)
    bravo = script({"echo": True}, note="bravo")
    send(page, bravo)
    wait_answered(page, 2)
    # The echo is the model's input: earlier turns are in it, the message being answered too — so a turn that
    # stayed in the history would be there.
    expect(answers(page).last).to_contain_text("[assistant] the first answer")
    expect(answers(page).last).to_contain_text("bravo")

    edit, regenerate = buttons(page)
    expect(edit).to_have_count(1)  # only on the latest user message
    expect(page.locator("#transcript .msg-user").last.get_by_role("button", name="Edit")).to_be_visible()
    expect(regenerate).to_have_count(1)  # only on the latest answer
    replaced_ids = [page.locator("#transcript .msg").nth(i).get_attribute("id") for i in (2, 3)]

    edit.click()
    box = page.get_by_label("Message")
    expect(box).to_have_value(bravo)
    expect(box).to_be_focused()
    expect(page.get_by_text("Editing your last message")).to_be_visible()
    charlie = script(SLOW_ECHO, note="charlie")
    box.fill(charlie)
    box.press("Enter")

    # While the new run is live there is nothing to edit or regenerate.
    expect(page.locator("#composer")).to_have_attribute("data-mode", "running")
    expect(edit).to_have_count(0)
    expect(regenerate).to_have_count(0)
    expect(page.get_by_text("Editing your last message")).to_be_hidden()
    wait_answered(page, 2)

    expect(user_texts(page)).to_have_text([FIRST, charlie])  # the replaced turn is gone from the page
    for replaced in replaced_ids:
        expect(page.locator(f"#{replaced}")).to_have_count(0)
    echo = answers(page).last
    expect(echo).to_contain_text("[assistant] the first answer")
    expect(echo).to_contain_text("charlie")
    expect(echo).not_to_contain_text("bravo")  # the superseded turn was not in the model's input
    expect(edit).to_have_count(1)
    expect(regenerate).to_have_count(1)
    assert [m["text"] for m in api.messages(session_id, "user")] == [FIRST, charlie]

    page.reload()  # a fresh page, from the database, agrees
    expect(user_texts(page)).to_have_text([FIRST, charlie])
    expect(page.get_by_text("bravo")).to_have_count(0)


def test_regenerate_answers_the_same_question_again_without_the_old_answer(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    send(page, FIRST)
    wait_answered(page, 1)
    question = script(SLOW_ECHO)
    send(page, question)
    wait_answered(page, 2)
    old = answers(page).last
    old_id = old.get_attribute("id")
    old_text = old.locator(".msg-text").inner_text()  # as read (answers are rendered Markdown)
    assert "[assistant] the first answer" in old_text  # earlier answers are in the model's input

    page.get_by_role("button", name="Regenerate", exact=True).click()
    expect(page.locator(f"#{old_id}")).to_have_count(0)  # the old answer leaves the page
    expect(page.locator("#composer")).to_have_attribute("data-mode", "running")
    expect(page.get_by_role("button", name="Regenerate", exact=True)).to_have_count(0)
    wait_answered(page, 2)

    expect(user_texts(page)).to_have_text([FIRST, question])  # the same question, once
    new = answers(page).last
    assert new.get_attribute("id") != old_id
    # The same input gives the same echo: had the old answer been sent, this one would have it in it.
    assert new.locator(".msg-text").inner_text() == old_text
    assert [m["text"] for m in api.messages(session_id, "assistant")] == ["the first answer", old_text]


def test_the_buttons_follow_the_run_in_every_tab_and_cancel_restores_normal_send(context, server, api, session_id):
    here, there = context.new_page(), context.new_page()
    for page in (here, there):
        open_session(page, server.base_url, session_id)
    send(here, script({"text": "an answer"}))
    wait_answered(here, 1)
    for page in (here, there):
        for button in buttons(page):
            expect(button).to_have_count(1)

    api.run_start(session_id, script(SLOW_ECHO))  # a run from elsewhere: both tabs hide the buttons...
    for page in (here, there):
        expect(page.locator("#composer")).to_have_attribute("data-mode", "running")
        for button in buttons(page):
            expect(button).to_have_count(0)
    wait_answered(there, 2)
    wait_answered(here, 2)
    for page in (here, there):  # ...and show them again, on the new latest turn, when it ends
        for button in buttons(page):
            expect(button).to_have_count(1)

    box = here.get_by_label("Message")
    box.fill("a draft")
    buttons(here)[0].click()
    expect(box).to_have_value(script(SLOW_ECHO))
    here.get_by_role("button", name="Cancel").click()
    expect(box).to_have_value("a draft")  # Cancel gives back what was there
    expect(here.get_by_text("Editing your last message")).to_be_hidden()
    buttons(here)[0].click()
    box.press("Escape")  # so does Esc
    expect(box).to_have_value("a draft")
    box.press("Enter")  # a normal send: nothing is replaced
    wait_answered(here, 3)
    expect(user_texts(here)).to_have_count(3)
    assert len(api.messages(session_id, "user")) == 3


def test_an_edit_whose_send_fails_stays_an_edit(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    send(page, FIRST)
    wait_answered(page, 1)
    page.get_by_role("button", name="Edit", exact=True).click()
    box = page.get_by_label("Message")
    edited = script({"text": "the edited answer"})
    box.fill(edited)
    page.route("**/send", lambda route: route.abort())
    box.press("Enter")
    expect(page.locator("#composer .composer-error")).to_contain_text("Not sent (network error)")
    expect(box).to_have_value(edited)  # the text is back...
    expect(page.get_by_text("Editing your last message")).to_be_visible()  # ...and still replaces the message
    page.unroute("**/send")
    box.press("Enter")
    expect(user_texts(page)).to_have_text([edited])  # the replaced turn has left the page
    wait_answered(page, 1)
    expect(page.locator("#transcript .msg-assistant .msg-text")).to_have_text(["the edited answer"])
    assert [m["text"] for m in api.messages(session_id)] == [edited, "the edited answer"]


def test_a_failed_answer_can_be_regenerated_or_its_question_edited(page, server, api, session_id):
    open_session(page, server.base_url, session_id)
    send(page, FIRST)
    wait_answered(page, 1)
    broken = script({"error": "the model is down"})
    send(page, broken)
    expect(page.locator("#run-status .state")).to_have_text("Failed", timeout=30_000)
    expect(page.locator("#composer")).to_have_attribute("data-mode", "idle")
    failed = answers(page).last  # the interrupted attempt is the latest answer
    expect(failed).to_have_attribute("data-status", "error")
    expect(failed.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(page.get_by_role("button", name="Regenerate", exact=True)).to_have_count(1)

    page.get_by_role("button", name="Edit", exact=True).click()
    page.get_by_label("Message").fill(script({"text": "a working answer"}))
    page.get_by_label("Message").press("Enter")
    expect(page.get_by_text("the model is down")).to_have_count(0)  # the failed turn and its notice are gone
    wait_answered(page, 2)
    expect(answers(page).locator(".msg-text")).to_have_text(["the first answer", "a working answer"])
    assert broken not in [m["text"] for m in api.messages(session_id)]
