"""The portal's session sidebar (harness/portal/sidebar.py) over HTTP, with the real database: on every page,
both lists paged through their "more" sentinels over 200+ sessions (each page a bounded number of queries),
search, the archived view, badges, and the owner's rename / archive / delete refused to everyone else as the
permission rule says (403 for a member, 404 for anyone else)."""

from __future__ import annotations

import html
import re
import uuid

import pytest
from django.db import connection
from django.test import Client

from orchestrator.models import Session
from tests.factories import make_run, session_state, shared_world
from tests.orchestrator.test_selectors_sharing import (  # noqa: F401  (`many`: a fixture)
    OWN,
    SHARED_TO_ME,
    SHARED_TO_TEAM,
    expected_ids,
    many,
)

pytestmark = pytest.mark.django_db

VISIBLE = OWN + SHARED_TO_ME + SHARED_TO_TEAM  # the first sessions of `many` are alice's to see


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(fragment: str, scope: str | None = None) -> list[str]:
    """The session ids a fragment lists (in one of its lists, if `scope` is given), in order."""
    if scope is not None:
        fragment = re.search(rf'<ul id="sidebar-{scope}".*?</ul>', fragment, re.S).group(0)
    return re.findall(r'<li id="sb-([0-9a-f-]{36})"', fragment)


def more_url(fragment: str, scope: str | None = None) -> str | None:
    if scope is not None:
        fragment = re.search(rf'<ul id="sidebar-{scope}".*?</ul>', fragment, re.S).group(0)
    found = re.search(r'hx-get="(/sidebar/more\?[^"]+)"', fragment)
    return html.unescape(found.group(1)) if found else None


def walk(client: Client, first: str, scope: str, django_assert_max_num_queries) -> list[str]:
    """A list from its first page on, following each page's "more" sentinel as the browser does."""
    ids, url = listed(first, scope), more_url(first, scope)
    while url:
        with django_assert_max_num_queries(6):  # whatever the page: login (2), the page, roles, live runs
            response = client.get(url)
        assert response.status_code == 200
        ids += listed(response.content.decode())
        url = more_url(response.content.decode())
    return ids


def test_every_page_has_the_sidebar_a_named_landmark_with_both_lists(user, session):
    client = client_for(user)
    page = client.get("/").content.decode()
    assert ('<nav id="sidebar" class="sidebar" aria-label="Sessions" data-item-url="/sidebar/item/" hx-ext="ws" '
            'ws-connect="/ws/sidebar/">') in page
    assert '<label for="sidebar-q" class="visually-hidden">Search sessions</label>' in page
    # The lists are fetched once the page is shown (a page never waits for them).
    assert re.search(r'id="sidebar-results"[^>]*hx-get="/sidebar/\?current="\s+hx-trigger="load"', page)
    assert "Loading sessions…" in page
    lists = client.get("/sidebar/", {"current": ""}).content.decode()
    assert '<h2 id="sidebar-h-mine">My sessions</h2>' in lists and ">Shared with me</h2>" in lists
    assert listed(lists, "mine") == [str(session.id)] and "Nothing shared with you" in lists
    # The session page marks its session and opens no socket of its own for the sidebar (the page's joins the
    # user's group).
    page = client.get(f"/sessions/{session.id}/").content.decode()
    assert '<nav id="sidebar" class="sidebar" aria-label="Sessions" data-item-url="/sidebar/item/">' in page
    assert re.search(rf'hx-get="/sidebar/\?current={session.id}"\s+hx-trigger="load"', page)
    lists = client.get("/sidebar/", {"current": str(session.id)}).content.decode()
    assert f'href="/sessions/{session.id}/" aria-current="page"' in lists
    assert 'id="sidebar"' not in Client().get("/login/").content.decode()  # nobody logged in: no sidebar


def test_both_lists_page_through_200_sessions_newest_first_in_bounded_queries(many, django_assert_max_num_queries):
    alice, _bob, sessions = many
    client = client_for(alice)
    with django_assert_max_num_queries(9):  # login (2), and each list: the page, roles, live runs
        first = client.get("/sidebar/").content.decode()
    assert len(listed(first, "mine")) == 30 and len(listed(first, "shared")) == 30
    live = lambda i, s: s.archived_at is None  # noqa: E731
    assert walk(client, first, "mine", django_assert_max_num_queries) == expected_ids(
        sessions, lambda i, s: i < OWN and live(i, s))
    assert walk(client, first, "shared", django_assert_max_num_queries) == expected_ids(
        sessions, lambda i, s: OWN <= i < VISIBLE and live(i, s))
    # The page itself renders no list: it fetches these first pages once shown.
    assert 'id="sidebar-mine"' not in client.get("/").content.decode()


def test_search_and_the_archived_view_page_too(many, django_assert_max_num_queries):
    alice, _bob, sessions = many
    client = client_for(alice)
    first = client.get("/sidebar/", {"q": "SESSION 1"}).content.decode()  # every word of it must match
    if connection.vendor == "postgresql":  # full-text: a word of the title begins with each word of q
        matches_1 = lambda title: any(word.startswith("1") for word in title.split())  # noqa: E731
    else:  # SQLite: each word of q anywhere in the title
        matches_1 = lambda title: "1" in title  # noqa: E731
    assert "q=SESSION%201" in more_url(first, "mine")  # the search goes on in the next pages
    titled = lambda i, s: "session" in s.title and matches_1(s.title)  # noqa: E731
    assert walk(client, first, "mine", django_assert_max_num_queries) == expected_ids(
        sessions, lambda i, s: i < OWN and s.archived_at is None and titled(i, s))
    assert walk(client, first, "shared", django_assert_max_num_queries) == expected_ids(
        sessions, lambda i, s: OWN <= i < VISIBLE and s.archived_at is None and titled(i, s))
    needle = client.get("/sidebar/", {"q": "needle"}).content.decode()  # in titles and in messages
    assert walk(client, needle, "mine", django_assert_max_num_queries) == expected_ids(
        sessions, lambda i, s: i < OWN and s.archived_at is None and (i % 7 == 0 or i % 11 == 0))

    archived = client.get("/sidebar/", {"archived": "1"}).content.decode()
    assert "Archived — my sessions" in archived
    assert walk(client, archived, "mine", django_assert_max_num_queries) == expected_ids(
        sessions, lambda i, s: i < OWN and s.archived_at is not None)
    assert ">Unarchive<span" in archived and ">Archive<span" not in archived

    nothing = client.get("/sidebar/", {"q": "no such words anywhere"}).content.decode()
    assert listed(nothing) == [] and nothing.count("No match") == 2


@pytest.mark.parametrize("query", [{"q": "nul\x00"}, {"scope": "everyone", "cursor": "x"}, {"scope": "mine"},
                                   {"scope": "mine", "cursor": "garbage"}])
def test_bad_sidebar_queries_are_400(user, query):
    url = "/sidebar/more" if "scope" in query else "/sidebar/"
    response = client_for(user).get(url, query)
    assert response.status_code == 400 and response["Content-Type"].startswith("text/plain")


def test_badges_say_what_the_live_run_is_doing(user):
    states = {"running": ("assistant_streaming", None), "approval": ("awaiting_approval", None),
              "stopping": ("function_execute", user), "": ("completed", None)}
    runs = {badge: make_run(owner=user, state=state, title=f"{badge or 'idle'} one", stopped_by=stopper)
            for badge, (state, stopper) in states.items()}
    page = client_for(user).get("/sidebar/").content.decode()
    for badge, words in (("running", "Running"), ("approval", "Needs approval"), ("stopping", "Stopping")):
        session_id = runs[badge].session_id
        assert (f'<span id="sb-badge-{session_id}" class="sidebar-badge" data-badge="{badge}">'
                f'<span class="visually-hidden">, </span>{words}</span>') in page
    idle = runs[""].session_id
    assert f'<span id="sb-badge-{idle}" class="sidebar-badge" data-badge=""></span>' in page


ACTIONS = [("rename", {"title": "taken over"}), ("archive", {"archived": "1"}), ("delete", {})]


@pytest.mark.parametrize(("action", "data"), ACTIONS)
@pytest.mark.parametrize(("who", "status"), [("collaborator", 403), ("viewer", 403), ("group_member", 403),
                                             ("non_member", 404)])
def test_only_the_owner_may_rename_archive_or_delete(action, data, who, status):
    world = shared_world(live=False)
    before = session_state(world.session.id)
    response = client_for(world.users[who]).post(f"/sidebar/{world.session.id}/{action}", data)
    assert response.status_code == status
    assert session_state(world.session.id) == before
    # The owner's own request does it (so the refusal above was the rule's, not a broken request).
    owner = client_for(world.users["owner"]).post(f"/sidebar/{world.session.id}/{action}", data)
    assert owner.status_code == 200 and session_state(world.session.id) != before


def test_members_see_no_owners_actions_and_unknown_sessions_are_404():
    world = shared_world(live=False)
    shared = client_for(world.users["viewer"]).get("/sidebar/").content.decode()
    assert listed(shared, "shared") == [str(world.session.id)] and "alice · viewer" in shared
    assert "Manage" not in shared and "/sidebar/" + str(world.session.id) not in shared
    mine = client_for(world.users["owner"]).get("/sidebar/").content.decode()
    assert 'Rename<span class="visually-hidden"> “shared session”</span></button>' in mine
    assert 'Delete<span class="visually-hidden"> “shared session”</span></button>' in mine
    unknown = client_for(world.users["owner"]).post("/sidebar/3b2b3f0e-8a6b-4c1e-9d6a-000000000000/rename", {"title": "x"})
    assert unknown.status_code == 404
    assert client_for(world.users["non_member"]).post(f"/sidebar/{world.session.id}/rename",
                                                      {"title": ""}).status_code == 404  # even a bad title


def test_the_owner_renames_archives_unarchives_and_deletes(user):
    session = make_run(owner=user, title="first").session
    client = client_for(user)
    item = client.post(f"/sidebar/{session.id}/rename", {"title": "  second  "}).content.decode()
    assert listed(item) == [str(session.id)] and '<span id="sb-title-' in item and ">second</span>" in item
    refused = client.post(f"/sidebar/{session.id}/rename", {"title": " "}).content.decode()
    assert 'role="alert">title must not be empty</p>' in refused  # shown in the item, nothing changed
    assert Session.objects.get(pk=session.id).title == "second"

    assert client.post(f"/sidebar/{session.id}/archive", {"archived": "1"}).content == b""  # leaves the view
    assert listed(client.get("/sidebar/").content.decode()) == []
    assert listed(client.get("/sidebar/", {"archived": "1"}).content.decode()) == [str(session.id)]
    assert client.post(f"/sidebar/{session.id}/archive", {"archived": "0"}).content == b""
    assert listed(client.get("/sidebar/").content.decode()) == [str(session.id)]

    live = make_run(owner=user, state="assistant_streaming", title="busy").session
    busy = client.post(f"/sidebar/{live.id}/delete").content.decode()
    assert "stop the run before deleting its session" in busy and Session.objects.filter(pk=live.id).exists()
    assert client.post(f"/sidebar/{session.id}/delete").content == b""
    assert not Session.objects.filter(pk=session.id).exists()
    # Deleting the session whose page is open takes the browser home.
    page = make_run(owner=user, title="open here").session
    response = client.post(f"/sidebar/{page.id}/delete", {"current": str(page.id)})
    assert response.status_code == 200 and response["HX-Redirect"] == "/"


def test_without_a_login_htmx_gets_401_and_a_page_load_the_login(db):
    assert Client().get("/sidebar/", headers={"HX-Request": "true"}).status_code == 401
    assert Client().get("/sidebar/")["Location"].startswith("/login/")


def test_a_session_the_page_does_not_list_comes_first_in_its_list_if_it_belongs_to_the_view():
    world = shared_world(live=False)
    session_id = world.session.id
    item = client_for(world.users["viewer"]).get(f"/sidebar/item/{session_id}", {"current": ""}).content.decode()
    assert item.startswith('<div hx-swap-oob="afterbegin:#sidebar-shared">\n<li id="sb-')
    own = client_for(world.users["owner"]).get(f"/sidebar/item/{session_id}").content.decode()
    assert own.startswith('<div hx-swap-oob="afterbegin:#sidebar-mine">')
    # Not in this view (archived, or a search the page shows): nothing.
    for who, query in (("owner", {"archived": "1"}), ("owner", {"q": "shared"})):
        response = client_for(world.users[who]).get(f"/sidebar/item/{session_id}", query)
        assert response.status_code == 200 and response.content == b""
    # Not the caller's to see: the rule's 404, as for an id that does not exist.
    assert client_for(world.users["non_member"]).get(f"/sidebar/item/{session_id}").status_code == 404
    assert client_for(world.users["owner"]).get(f"/sidebar/item/{uuid.uuid4()}").status_code == 404
