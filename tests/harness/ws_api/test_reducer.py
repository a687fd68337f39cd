"""The reference client reducer (harness/ws_api/reducer.py): pure, and idempotent for events that repeat
what a snapshot already shows."""

from __future__ import annotations

import copy

import pytest

from harness.ws_api.reducer import apply_event, apply_events, merge_delta

RUN = "run-2"


def message(id: int, text: str, *, status: str = "complete", role: str = "assistant") -> dict:
    return {"id": id, "run_id": RUN, "role": role, "text": text, "status": status, "author": None, "call_id": None,
            "tool_name": None, "usage": None, "created_at": "t"}


def run(id: str = RUN, state: str = "assistant_streaming", outcome=None) -> dict:
    return {"id": id, "state": state, "outcome": outcome, "turn_count": 1, "max_turns": 20, "stop_requested": False,
            "created_at": "t", "started_at": "t", "finished_at": None}


def snapshot(**fields) -> dict:
    active = run()
    base = {"id": "s", "title": "t", "created_at": "t", "updated_at": "t", "messages": [],
            "active_run": active, "latest_run": active, "pending_approvals": [], "steering": []}
    return {**base, **fields}


def delta(message_id: int, offset: int, text: str) -> dict:
    return {"type": "message.delta", "run_id": RUN, "message_id": message_id, "offset": offset, "text": text}


def state(run_id: str, state: str, prev: str = "x", stop: bool = False) -> dict:
    return {"type": "run.state", "run_id": run_id, "state": state, "prev_state": prev, "turn_count": 1,
            "stop_requested": stop}


@pytest.mark.parametrize("text, offset, chunk, merged", [
    ("", 0, "hello", "hello"),
    ("hello", 5, " world", "hello world"),
    ("hello world", 5, " world", "hello world"),  # a repeat
    ("hello world", 0, "hel", "hello world"),  # a repeat of an older, shorter delta
    ("hello wo", 5, " world", "hello world"),  # overlaps the end
    ("hello", 6, "world", None),  # a gap: deltas were lost
    ("héllo", 2, "llo!", "héllo!"),  # offsets count code points
])
def test_merge_delta(text, offset, chunk, merged):
    assert merge_delta(text, offset, chunk) == merged


def test_deltas_build_a_new_streaming_message_and_repeats_change_nothing():
    events = [delta(7, 0, "one"), delta(7, 3, " two"), delta(7, 7, " three")]
    once = apply_events(snapshot(), events)
    assert once["messages"] == [{**message(7, "one two three", status="streaming"), "created_at": None}]
    assert apply_events(once, events) == once
    assert apply_events(once, [events[1]]) == once


def test_a_delta_overlapping_the_snapshots_checkpointed_text_merges_by_offset():
    start = snapshot(messages=[message(7, "one two th", status="streaming")])
    after = apply_events(start, [delta(7, 3, " two three"), delta(7, 13, " four")])
    assert after["messages"][0]["text"] == "one two three four"


def test_a_gap_is_skipped_and_message_completed_brings_the_full_text():
    start = snapshot(messages=[message(7, "one", status="streaming")])
    gapped = apply_events(start, [delta(7, 8, " three"), delta(7, 14, " four")])
    assert gapped == start
    done = apply_event(gapped, {"type": "message.completed", "message_id": 7, "run_id": RUN, "role": "assistant",
                                "status": "complete", "text": "one two three four"})
    assert done["messages"][0]["text"] == "one two three four" and done["messages"][0]["status"] == "complete"
    assert done["messages"][0]["created_at"] == "t"  # fields the event does not carry are kept


def test_deltas_never_touch_a_completed_message():
    start = snapshot(messages=[message(7, "one two", status="stopped")])
    assert apply_events(start, [delta(7, 0, "one two three"), delta(7, 7, " three")]) == start


def test_message_completed_upserts_in_id_order():
    start = snapshot(messages=[message(3, "a"), message(9, "c")])
    after = apply_event(start, {"type": "message.completed", "message_id": 5, "run_id": RUN, "role": "tool",
                                "status": "complete", "text": "b"})
    assert [(m["id"], m["role"], m["text"]) for m in after["messages"]] == [(3, "assistant", "a"), (5, "tool", "b"),
                                                                          (9, "assistant", "c")]
    assert apply_event(after, {"type": "message.completed", "message_id": 5, "run_id": RUN, "role": "tool",
                               "status": "complete", "text": "b"}) == after


def test_run_state_updates_the_live_run_and_a_terminal_state_clears_it():
    moved = apply_event(snapshot(), state(RUN, "awaiting_approval", stop=True))
    assert moved["active_run"]["state"] == "awaiting_approval" and moved["active_run"]["stop_requested"] is True
    assert moved["latest_run"] == moved["active_run"] and moved["active_run"]["max_turns"] == 20
    done = apply_event(moved, state(RUN, "stopped"))
    assert done["active_run"] is None and done["latest_run"]["outcome"] == "stopped"


def test_a_finished_run_is_never_revived_by_a_repeat_of_its_earlier_states():
    finished = run(state="completed", outcome="completed")
    start = snapshot(active_run=None, latest_run=finished)
    assert apply_events(start, [state(RUN, "provisioning", prev=""), state(RUN, "assistant_streaming")]) == start


def test_a_repeat_from_an_older_run_is_ignored_and_a_new_run_is_adopted():
    start = snapshot(steering=[{"id": "st", "run_id": RUN, "text": "x", "status": "queued", "reason": None,
                                "created_at": "t"}])
    stale = [state("run-1", "completed"), {"type": "run.finished", "run_id": "run-1", "outcome": "completed",
                                           "receipt": {}},
             {"type": "steering.updated", "steering_id": "old", "run_id": "run-1", "status": "discarded",
              "text": "y", "reason": "run_completed"}]
    assert apply_events(start, stale) == start
    finished = apply_events(start, [state(RUN, "completed"),
                                    {"type": "run.finished", "run_id": RUN, "outcome": "completed", "receipt": {}}])
    new = apply_event(finished, state("run-3", "provisioning", prev=""))
    assert new["active_run"]["id"] == new["latest_run"]["id"] == "run-3"
    assert new["active_run"]["state"] == "provisioning" and new["steering"] == []


def test_approvals_are_added_once_for_the_active_run_and_removed_when_resolved():
    requested = {"type": "approval.requested", "approval_id": "ap", "run_id": RUN, "call_id": "c", "name": "shell",
                 "arguments": {"command": "ls"}, "expires_at": "e"}
    once = apply_events(snapshot(), [requested, requested])
    assert [(a["id"], a["status"], a["name"]) for a in once["pending_approvals"]] == [("ap", "pending", "shell")]
    resolved = apply_event(once, {"type": "approval.resolved", "approval_id": "ap", "status": "approved",
                                  "reason": "decided"})
    assert resolved["pending_approvals"] == []
    ended = snapshot(active_run=None, latest_run=run(state="completed", outcome="completed"))
    assert apply_event(ended, requested) == ended


def test_steering_is_upserted_and_applied_steering_leaves_the_list():
    queued = {"type": "steering.updated", "steering_id": "st", "run_id": RUN, "status": "queued", "text": "x",
              "reason": ""}
    once = apply_events(snapshot(), [queued, queued])
    assert [(s["id"], s["status"], s["reason"]) for s in once["steering"]] == [("st", "queued", None)]
    discarded = apply_event(once, {**queued, "status": "discarded", "reason": "run_stopped"})
    assert [(s["status"], s["reason"]) for s in discarded["steering"]] == [("discarded", "run_stopped")]
    assert apply_event(once, {**queued, "status": "applied"})["steering"] == []


@pytest.mark.parametrize("event", [
    {"type": "function.started", "run_id": RUN, "call_id": "c", "name": "shell", "status": "running"},
    {"type": "something.new"},
])
def test_other_events_change_nothing(event):
    start = snapshot()
    assert apply_event(start, event) is start


def test_apply_event_never_mutates_its_arguments():
    start = snapshot(messages=[message(7, "one", status="streaming")])
    events = [delta(7, 3, " two"), state(RUN, "completed"),
              {"type": "run.finished", "run_id": RUN, "outcome": "completed", "receipt": {}}]
    frozen, frozen_events = copy.deepcopy(start), copy.deepcopy(events)
    apply_events(start, events)
    assert start == frozen and events == frozen_events


def test_messages_superseded_removes_them_and_a_repeat_changes_nothing():
    start = snapshot(messages=[message(3, "q1", role="user"), message(4, "a1"), message(5, "q2", role="user"),
                               message(6, "a2")])
    superseded = {"type": "messages.superseded", "message_ids": [5, 6, 99], "run_id": "run-3"}
    after = apply_event(start, superseded)
    assert [m["id"] for m in after["messages"]] == [3, 4]
    assert apply_event(after, superseded) == after
    assert [m["id"] for m in start["messages"]] == [3, 4, 5, 6]  # pure
