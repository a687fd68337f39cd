"""The session sidebar in the browser: a run in ANOTHER session moves its badge live (on a session page and on
the home page), 200+ sessions load page by page as the list scrolls, search as you type, and on a phone the
sidebar is collapsed behind its button."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from .support import PHONE, VIEWPORT, WS_PROBE, Api, open_session, wait_connected


def shell_script(command: str) -> str:
    turns = [{"calls": [{"name": "shell", "arguments": {"command": command}}]}, {"text": "done"}]
    return "script:" + json.dumps({"turns": turns})


def sidebar(page):
    return page.get_by_role("navigation", name="Sessions")


def test_a_run_in_another_session_moves_its_badge_live_on_a_session_page_and_the_home_page(
        context, server, api, session_id):
    bob = Api(server.base_url, server.create_token("sidebar-bob"))
    shared = bob.new_session("bob's shared work")
    assert bob.call("PUT", f"/api/sessions/{shared}/members/users/alice", {"role": "viewer"})[0] == 200
    older = api.new_session("alice's older session")
    mine = api.new_session("alice's other session")

    session_page = context.new_page()
    open_session(session_page, server.base_url, session_id)  # alice reads one of her sessions …
    home = context.new_page()
    home.goto(f"{server.base_url}/")  # … and has the home page open too
    wait_opened = "window.__e2e && window.__e2e.opens >= 1"
    home.wait_for_function(wait_opened)  # the sidebar's socket joined before it opened

    shared_item = sidebar(session_page).locator(f"#sb-{shared}")
    expect(sidebar(session_page).locator("#sidebar-shared")).to_contain_text("bob's shared work")
    expect(shared_item.locator(".sidebar-badge")).to_have_text("")
    expect(sidebar(session_page).get_by_role("link", name=re.compile("^a run in another session")))\
        .to_have_attribute("aria-current", "page")

    bob.run_start(shared, shell_script("echo from bob"))  # bob's run starts and parks on his approval
    api.run_start(mine, shell_script("echo from alice"))
    for page, item in ((session_page, f"#sb-{shared}"), (session_page, f"#sb-{mine}"), (home, f"#sb-{shared}"),
                       (home, f"#sb-{mine}")):
        badge = sidebar(page).locator(f"{item} .sidebar-badge")
        expect(badge).to_have_attribute("data-badge", "approval")
        expect(badge).to_have_text(", Needs approval")  # (", " for screen readers only)
    # Screen readers hear the session and its state in the link's name.
    expect(sidebar(home).get_by_role("link", name=re.compile(r"bob's shared work\W+Needs approval"))).to_be_visible()
    # The open session's own page did not change: the badge came over its socket, not a reload.
    expect(session_page.locator("#composer")).to_have_attribute("data-mode", "idle")

    bob.stop(shared)
    api.stop(mine)
    for page in (session_page, home):
        for item in (shared, mine):
            expect(sidebar(page).locator(f"#sb-{item} .sidebar-badge")).to_have_attribute("data-badge", "")

    # A run starting in an older session makes it the newest: it moves to the top of the list.
    expect(sidebar(home).locator("#sidebar-mine > li.sidebar-item").first).not_to_have_id(f"sb-{older}")
    api.run_start(older, 'script:{"turns":[{"text":"hello"}]}')
    expect(sidebar(home).locator("#sidebar-mine > li.sidebar-item").first).to_have_id(f"sb-{older}")

    # A session shared with alice while her pages are open joins their lists, newest first.
    late = bob.new_session("bob's late share")
    assert bob.call("PUT", f"/api/sessions/{late}/members/users/alice", {"role": "collaborator"})[0] == 200
    for page in (session_page, home):
        expect(sidebar(page).locator("#sidebar-shared > li.sidebar-item").first).to_have_id(f"sb-{late}")


def many_sessions(server, username: str, count: int) -> None:
    """`count` sessions of `username` ("item 0" the newest), written straight to the server's database."""
    server.manage(
        "shell", "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from django.contrib.auth import get_user_model; from orchestrator.models import Session; "
        f"user, _ = get_user_model().objects.get_or_create(username={username!r}); now = timezone.now(); "
        "Session.objects.bulk_create(Session(owner=user, title=f'item {i}', updated_at=now - timedelta(seconds=i)) "
        f"for i in range({count}))",
    )


def logged_in_page(browser, server, username: str, **options):
    context = browser.new_context(**{"viewport": VIEWPORT, **options})
    context.add_init_script(WS_PROBE)
    context.add_cookies([{"name": "sessionid", "value": server.login_cookie(username), "url": server.base_url}])
    return context, context.new_page()


def test_200_sessions_load_as_the_list_scrolls_and_search_filters_as_you_type(browser, server):
    many_sessions(server, "sidebar-many", 230)
    context, page = logged_in_page(browser, server, "sidebar-many")
    try:
        page.goto(f"{server.base_url}/")
        mine = sidebar(page).locator("#sidebar-mine > li.sidebar-item")
        expect(mine).to_have_count(30)
        expect(mine.first).to_contain_text("item 0")  # newest activity first
        for shown in (60, 90):  # scrolling to the end of the list loads the next page
            sidebar(page).locator("#sidebar-mine > li.sidebar-more").scroll_into_view_if_needed()
            expect(mine).to_have_count(shown)
        expect(mine.nth(89)).to_contain_text("item 89")

        search = sidebar(page).get_by_role("searchbox", name="Search sessions")
        search.press_sequentially("item 22", delay=30)  # every word: 22, 122, 220-229
        expect(mine).to_have_count(12)
        expect(mine.first).to_contain_text("item 22")
        expect(sidebar(page).locator("#sidebar-shared")).to_contain_text("No match")
        search.fill("")
        search.press("Backspace")  # (an input event with the box empty)
        expect(mine).to_have_count(30)
    finally:
        context.close()


def test_the_archived_view_and_the_owners_actions(context, server, api):
    page = context.new_page()
    session_id = api.new_session("to be archived")
    page.goto(f"{server.base_url}/")
    item = sidebar(page).locator(f"#sb-{session_id}")
    item.get_by_text("Manage").click()
    item.get_by_role("button", name="Archive “to be archived”").click()
    expect(item).to_have_count(0)
    sidebar(page).get_by_label("Archived").check()
    expect(sidebar(page).get_by_role("heading", name="Archived — my sessions")).to_be_visible()
    archived = sidebar(page).locator(f"#sb-{session_id}")
    archived.get_by_text("Manage").click()
    archived.get_by_role("textbox").fill("archived and renamed")
    archived.get_by_role("button", name=re.compile("^Rename")).click()
    expect(archived.locator(".sidebar-title")).to_have_text("archived and renamed")
    assert api.session(session_id)["title"] == "archived and renamed"


def test_on_a_phone_the_sidebar_is_collapsed_behind_its_button(make_context, server, session_id):
    page = make_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    open_session(page, server.base_url, session_id)
    toggle = sidebar(page).get_by_role("button", name="Sessions", exact=True)  # (its mark is not in its name)
    expect(toggle).to_have_attribute("aria-expanded", "false")
    search = sidebar(page).get_by_role("searchbox", name="Search sessions")
    expect(search).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(search).to_be_visible()
    wait_connected(page)
