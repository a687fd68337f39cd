"""Who hears that a session's listing changed (`permissions.session_audience`), which events change it
(`events.with_activity`), and where `publish` sends the announcement: to its users' groups only, never to the
session's group (JSON clients do not see it)."""

from __future__ import annotations

from unittest.mock import ANY

import pytest
from channels.layers import get_channel_layer

from orchestrator import events
from orchestrator.permissions import session_audience
from tests.factories import shared_world

pytestmark = pytest.mark.django_db


def state(prev: str, now: str, stop: bool = False) -> dict:
    return events.run_state(run_id="r", state=now, prev_state=prev, turn_count=1, stop_requested=stop)


def test_the_audience_is_the_owner_the_members_and_the_teams_members_active_ones_only():
    world = shared_world(live=False)
    users = world.users
    expected = sorted(users[r].pk for r in ("owner", "collaborator", "viewer", "group_member"))
    assert session_audience(world.session.id) == expected
    users["viewer"].is_active = False
    users["viewer"].save()
    assert session_audience(world.session.id) == [pk for pk in expected if pk != users["viewer"].pk]
    assert session_audience("3b2b3f0e-8a6b-4c1e-9d6a-000000000000") == []


@pytest.mark.parametrize(("emitted", "announced"), [
    ([state("", "provisioning")], True),  # a run starts
    ([state("function_prepare", "awaiting_approval")], True),  # it parks on an approval
    ([state("awaiting_approval", "function_execute")], True),  # … and goes on
    ([state("awaiting_assistant", "awaiting_assistant", stop=True)], True),  # a stop is recorded
    ([state("tearing_down", "stopped", stop=True)], True),  # it ends
    ([state("awaiting_assistant", "assistant_streaming")], False),  # running, still running
    ([state("assistant_streaming", "tearing_down", stop=True)], False),  # stopping, still stopping
    ([events.message_delta(run_id="r", message_id=1, offset=0, text="x", produced_at=0.0)], False),
    ([{"type": "run.finished", "run_id": "r", "outcome": "completed", "receipt": {}}], True),
])
def test_only_events_that_change_a_listing_are_announced(emitted, announced):
    world = shared_world(live=False)
    result = events.with_activity(world.session.id, list(emitted))
    assert result[:len(emitted)] == emitted
    if announced:
        assert result[-1] == {"type": events.ACTIVITY_MESSAGE_TYPE, "session_id": str(world.session.id),
                              "users": session_audience(world.session.id)}
    else:
        assert result == emitted


async def test_publish_sends_the_announcement_to_the_users_groups_only():
    layer = get_channel_layer()
    user_channel, session_channel = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(events.user_group(7), user_channel)
    await layer.group_add(events.session_group("s"), session_channel)
    change = state("", "provisioning")
    await events.publish("s", change, {"type": events.ACTIVITY_MESSAGE_TYPE, "session_id": "s", "users": [7]})
    assert await layer.receive(session_channel) == {"type": events.CHANNEL_MESSAGE_TYPE, "event": change}
    assert await layer.receive(user_channel) == {"type": events.ACTIVITY_MESSAGE_TYPE, "session_id": "s", "id": ANY}
    # Nothing else reached the session's group (an event sent after it arrives next, not the announcement).
    await events.publish("s", state("provisioning", "awaiting_assistant"))
    assert (await layer.receive(session_channel))["event"]["state"] == "awaiting_assistant"


@pytest.mark.django_db(transaction=True)
async def test_a_new_member_hears_of_the_session_once_the_grant_commits(make_user):
    from orchestrator.services.members import session_member_set
    from orchestrator.services.sessions import session_create
    from tests.helpers import db

    owner, newcomer = await db(make_user, "olga"), await db(make_user, "nina")
    session = await db(session_create, owner=owner, title="olga's")
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.user_group(newcomer.pk), channel)
    await db(session_member_set, session_id=session.id, user=owner, kind="user", name="nina", role="viewer")
    assert await layer.receive(channel) == {"type": events.ACTIVITY_MESSAGE_TYPE, "session_id": str(session.id),
                                            "id": ANY}
