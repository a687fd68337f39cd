"""The sidebar's live badges over the page's socket, with the real worker: a run in ANOTHER session (shared
with the reader by a grant or through a team) reaches the badge of every page its owner and members have open
— a session page's socket and the home page's sidebar socket alike — and nobody else's."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from harness.asgi import application
from harness.portal import sidebar
from orchestrator import events
from orchestrator.services.runs import run_stop
from orchestrator.services.sessions import session_create, session_update
from tests.factories import shared_world
from tests.harness.portal.test_consumer import ORIGIN, close_code, connect, cookie_for, fragments_until
from tests.helpers import db, script, start, start_parked_on_shell, wait_terminal

pytestmark = pytest.mark.django_db(transaction=True)


async def connect_sidebar(user=None) -> WebsocketCommunicator:
    headers = [ORIGIN] + ([(b"cookie", await cookie_for(user))] if user is not None else [])
    communicator = WebsocketCommunicator(application, "/ws/sidebar/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def badge(session_id, value: str) -> str:
    return f'<span id="sb-badge-{session_id}" class="sidebar-badge" data-badge="{value}" hx-swap-oob="true">'


async def test_the_sidebar_socket_needs_a_login():
    assert await close_code(await connect_sidebar()) == 4401


async def test_a_run_in_another_session_moves_the_badges_of_its_members_pages(worker):
    world = await db(shared_world, live=False)
    owner, viewer, teammate = world.users["owner"], world.users["viewer"], world.users["group_member"]
    stranger = world.users["non_member"]
    shared = world.session.id
    # The viewer has a session of their own open; the teammate (a member through the group) the home page; a
    # stranger a session of theirs.
    own = await db(session_create, owner=viewer, title="the viewer's own")
    viewer_tab, _ = await connect(own.id, user=viewer)
    await viewer_tab.receive_from(timeout=5)  # the snapshot: the socket is in its groups
    teammate_home = await connect_sidebar(teammate)
    stranger_own = await db(session_create, owner=stranger, title="the stranger's own")
    stranger_tab, _ = await connect(stranger_own.id, user=stranger)
    await stranger_tab.receive_from(timeout=5)

    run, _approval = await start_parked_on_shell(world.session, owner, "ls")
    for tab in (viewer_tab, teammate_home):
        received = "".join(await fragments_until(badge(shared, "approval"))(tab))
        assert f'<span id="sb-title-{shared}" class="sidebar-title" hx-swap-oob="true">' in received
        assert "Needs approval</span>" in received

    await db(run_stop, session_id=shared, requested_by=owner)
    for tab in (viewer_tab, teammate_home):
        received = "".join(await fragments_until(badge(shared, "") + "</span>")(tab))
        assert badge(shared, "stopping") in received  # stopping, then no live run
    await wait_terminal(run.id)

    await db(session_update, session_id=shared, user=owner, title="renamed by its owner")
    for tab in (viewer_tab, teammate_home):
        await fragments_until("renamed by its owner</span>")(tab)

    # The stranger's socket hears its own sessions (so it could have heard the shared one), never the shared one.
    stranger_run = await start(stranger_own, stranger, script({"text": "hello"}))
    received = "".join(await fragments_until(badge(stranger_own.id, "") + "</span>")(stranger_tab))
    assert str(shared) not in received
    await wait_terminal(stranger_run.id)
    for tab in (viewer_tab, teammate_home, stranger_tab):
        await tab.disconnect()


async def test_one_announcement_is_rendered_once_for_all_of_a_users_sockets(monkeypatch):
    """Many tabs of one user hear the same announcement: one render between them (in one process), each tab
    still gets the fragment, and the next announcement is rendered afresh."""
    world = await db(shared_world, live=False)
    owner = world.users["owner"]
    renders = []

    def counted(user, session_id):
        renders.append(session_id)
        return f"<b>{len(renders)}</b>"

    monkeypatch.setattr(sidebar, "activity_html", counted)
    tabs = [await connect_sidebar(owner) for _ in range(3)]
    for round_number in (1, 2):
        await events.publish(world.session.id, await db(events._activity, world.session.id))  # `with_activity`
        assert [await tab.receive_from(timeout=5) for tab in tabs] == [f"<b>{round_number}</b>"] * 3
    assert renders == [str(world.session.id)] * 2
    for tab in tabs:
        await tab.disconnect()
