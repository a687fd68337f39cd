"""Who is viewing a session right now ("Here now"): kept by the page's sockets over the channel layer, one user
counted once however many tabs they have open, gone when their last tab closes or their access is taken."""

from __future__ import annotations

import pytest

from harness.portal.presence import TTL_SECONDS, Presence
from orchestrator.services.members import session_member_remove
from tests.factories import shared_world
from tests.harness.portal.test_consumer import connect
from tests.helpers import db, here_now, presence_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_user_is_here_while_any_of_their_tabs_is():
    clock = Clock()
    presence = Presence(channel="me", user="alice", clock=clock)
    assert presence.users() == ["alice"]
    assert presence.here("t1", "bob") and presence.users() == ["alice", "bob"]
    assert not presence.here("t2", "bob")  # bob's second tab: nobody new
    assert not presence.here("me", "alice")  # our own announcement
    assert not presence.gone("t1") and presence.users() == ["alice", "bob"]  # one of bob's tabs closed
    assert presence.gone("t2") and presence.users() == ["alice"]
    assert not presence.gone("t2")  # said twice: nothing more


def test_a_presence_not_heard_from_for_the_ttl_is_dropped():
    clock = Clock()
    presence = Presence(channel="me", user="alice", clock=clock)
    presence.here("t1", "bob")
    presence.here("t2", "carol")
    clock.now += TTL_SECONDS - 1
    presence.here("t2", "carol")  # carol's tab beats; bob's process died without a word
    assert not presence.prune()
    clock.now += 2
    assert presence.prune() and presence.users() == ["alice", "carol"]


@pytest.mark.django_db(transaction=True)
async def test_the_page_shows_who_is_here_across_tabs_and_users():
    world = await db(shared_world, live=False)
    owner, viewer, dave = (world.users[r] for r in ("owner", "viewer", "group_member"))
    first, _ = await connect(world.session.id, user=owner)
    assert here_now(await first.receive_from(timeout=5)) == ["alice"]  # with the snapshot
    second, _ = await connect(world.session.id, user=owner)  # alice's second tab
    assert here_now(await second.receive_from(timeout=5)) == ["alice"]
    watcher, _ = await connect(world.session.id, user=viewer)
    assert here_now(await watcher.receive_from(timeout=5)) == ["carol"]
    await presence_until(watcher, ["alice", "carol"])  # alice's tabs answered
    await presence_until(first, ["alice", "carol"])
    await presence_until(second, ["alice", "carol"])

    await first.disconnect()  # one of alice's tabs closes: she is still here …
    late, _ = await connect(world.session.id, user=dave)
    await late.receive_from(timeout=5)
    # … so the next change carol sees is dave arriving, with alice still counted.
    assert here_now(await watcher.receive_from(timeout=5)) == ["alice", "carol", "dave"]
    await presence_until(late, ["alice", "carol", "dave"])
    await second.disconnect()  # alice's last tab
    await presence_until(watcher, ["carol", "dave"])
    await late.disconnect()
    await watcher.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_user_whose_access_is_taken_leaves_everyone_elses_here_now():
    world = await db(shared_world, live=False)
    page, _ = await connect(world.session.id, user=world.users["owner"])
    await page.receive_from(timeout=5)
    watcher, _ = await connect(world.session.id, user=world.users["viewer"])
    await presence_until(page, ["alice", "carol"])
    await db(session_member_remove, session_id=world.session.id, user=world.users["owner"], kind="user", name="carol")
    while (frame := await watcher.receive_output(timeout=5))["type"] != "websocket.close":
        pass  # carol's snapshot and presence, then the close
    assert frame["code"] == 4403
    await presence_until(page, ["alice"])
    await page.disconnect()
