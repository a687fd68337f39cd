"""The embedded channel layer (harness/layers.py): a group send reaches every member once, in one pass, and a
full member misses that message without the others missing it."""

from __future__ import annotations

from harness.layers import AmortisedInMemoryChannelLayer


async def test_a_group_send_reaches_every_member_and_skips_a_full_one():
    layer = AmortisedInMemoryChannelLayer(capacity=2)
    full, first, second = [await layer.new_channel() for _ in range(3)]
    for channel in (full, first, second):
        await layer.group_add("g", channel)
    await layer.send(full, {"type": "filler"})
    await layer.send(full, {"type": "filler"})  # at capacity: the group's message cannot go in

    await layer.group_send("g", {"type": "hello", "n": 1})
    await layer.group_send("nobody", {"type": "hello", "n": 2})  # an empty group is no error

    assert await layer.receive(first) == {"type": "hello", "n": 1}
    assert await layer.receive(second) == {"type": "hello", "n": 1}
    assert [await layer.receive(full) for _ in range(2)] == [{"type": "filler"}] * 2
    assert layer.channels == {}  # nothing else was queued anywhere
