"""Client reference code: keep a session snapshot current by applying the JSON WebSocket API's events.

A client takes the `session.snapshot` frame (the same object as `GET /api/sessions/<id>`) and folds every
later event into it with `apply_event`. The server joins the session's event group *before* it reads the
snapshot, so the first events after a snapshot may repeat what the snapshot already shows; every rule here is
idempotent for such repeats:

- `message.delta` is merged by character offset: `text[:offset] + chunk + text[offset + len(chunk):]`.
  Text only grows while a message streams, so a repeated delta rewrites the same characters. A delta whose
  offset lies beyond the text it is merged into (deltas were lost) is skipped: `message.completed` carries
  the full text, and a fresh snapshot always converges. Deltas for a message that is no longer `streaming`
  are ignored.
- `message.completed`, `approval.requested` and `steering.updated` upsert by id; `approval.resolved` and
  `messages.superseded` (an edit or a regeneration replaced them) remove by id.
- Runs: at most one run of a session is live, and it is the latest. A `run.state` with `prev_state == ""`
  (a run's first state) makes its run the latest; any other event about a run that is not the latest is a
  repeat from an older run and is ignored. A run the snapshot shows as finished (`latest_run.outcome` set)
  is never made active again. `run.finished` clears `active_run`.
- `approval.requested` is shown only for the active run, and `steering.updated` only for the latest run.

Offsets count Unicode code points (Python `str` indices), not UTF-16 code units: a JavaScript client merges
with `Array.from(text)` or equivalent.

`apply_event` is pure: it returns a new snapshot and never mutates its arguments. `function.*` events change
nothing in a snapshot (calls are in `GET /api/runs/<id>`), so they return it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Snapshot = dict[str, Any]
Event = dict[str, Any]

TERMINAL_STATES = frozenset({"completed", "stopped", "failed"})


def merge_delta(text: str, offset: int, chunk: str) -> str | None:
    """`text` with `chunk` written at `offset`, or None when the offset lies beyond the text (a gap)."""
    if offset < 0 or offset > len(text):
        return None
    return text[:offset] + chunk + text[offset + len(chunk):]


def apply_events(snapshot: Snapshot, events: Iterable[Event]) -> Snapshot:
    for event in events:
        snapshot = apply_event(snapshot, event)
    return snapshot


def apply_event(snapshot: Snapshot, event: Event) -> Snapshot:
    handler = _HANDLERS.get(event.get("type"))
    return handler(snapshot, event) if handler else snapshot


# --- messages ------------------------------------------------------------------------------------------------


def _new_message(message_id: int, run_id: str | None) -> dict[str, Any]:
    return {"id": message_id, "run_id": run_id, "role": "assistant", "text": "", "status": "streaming",
            "author": None, "call_id": None, "tool_name": None, "usage": None, "created_at": None}


def _put_message(snapshot: Snapshot, message: dict[str, Any]) -> Snapshot:
    others = [m for m in snapshot["messages"] if m["id"] != message["id"]]
    return {**snapshot, "messages": sorted([*others, message], key=lambda m: m["id"])}


def _find(items: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any] | None:
    return next((item for item in items if item[key] == value), None)


def _message_delta(snapshot: Snapshot, event: Event) -> Snapshot:
    message = _find(snapshot["messages"], "id", event["message_id"])
    if message is None:
        message = _new_message(event["message_id"], event["run_id"] or None)
    elif message["status"] != "streaming":
        return snapshot  # final already: its text is complete
    text = merge_delta(message["text"], event["offset"], event["text"])
    if text is None:
        return snapshot  # deltas were lost: wait for message.completed (or resync)
    return _put_message(snapshot, {**message, "text": text})


def _message_completed(snapshot: Snapshot, event: Event) -> Snapshot:
    message = _find(snapshot["messages"], "id", event["message_id"]) or _new_message(event["message_id"], None)
    return _put_message(snapshot, {
        **message, "run_id": event["run_id"] or None, "role": event["role"], "status": event["status"],
        "text": event["text"], "author": event.get("author"),
    })


def _messages_superseded(snapshot: Snapshot, event: Event) -> Snapshot:
    gone = set(event["message_ids"])
    return {**snapshot, "messages": [m for m in snapshot["messages"] if m["id"] not in gone]}


# --- runs ----------------------------------------------------------------------------------------------------


def _new_run(run_id: str) -> dict[str, Any]:
    return {"id": run_id, "state": None, "outcome": None, "turn_count": 0, "max_turns": None,
            "stop_requested": False, "started_by": None, "created_at": None, "started_at": None, "finished_at": None}


def _run_state(snapshot: Snapshot, event: Event) -> Snapshot:
    run_id, state = event["run_id"], event["state"]
    latest = snapshot.get("latest_run")
    same = latest is not None and latest["id"] == run_id
    if same and latest.get("outcome"):
        return snapshot  # a repeat of a finished run's earlier state: never make it active again
    if not same and latest is not None and event["prev_state"] != "":
        return snapshot  # a repeat from an older run: a newer run is announced by its first state (prev "")
    run = {**(latest if same else _new_run(run_id)), "state": state, "turn_count": event["turn_count"],
           "stop_requested": event["stop_requested"]}
    if "started_by" in event:  # a run's first state says who started it
        run["started_by"] = event["started_by"]
    if state in TERMINAL_STATES:
        run["outcome"] = state
    changed = {**snapshot, "latest_run": run, "active_run": None if state in TERMINAL_STATES else run}
    if not same:
        changed["steering"] = []  # the snapshot's steering belongs to the latest run only
    return changed


def _run_finished(snapshot: Snapshot, event: Event) -> Snapshot:
    latest = snapshot.get("latest_run")
    if latest is not None and latest["id"] != event["run_id"]:
        return snapshot  # a repeat from an older run
    run = {**(latest or _new_run(event["run_id"])), "state": event["outcome"], "outcome": event["outcome"]}
    return {**snapshot, "latest_run": run, "active_run": None}


# --- approvals and steering ----------------------------------------------------------------------------------


def _approval_requested(snapshot: Snapshot, event: Event) -> Snapshot:
    approval = {
        "id": event["approval_id"], "run_id": event["run_id"], "call_id": event["call_id"], "name": event["name"],
        "arguments": event["arguments"], "status": "pending", "reason": None, "decided_by": None, "created_at": None,
        "expires_at": event["expires_at"],
    }
    pending = snapshot["pending_approvals"]
    active = snapshot.get("active_run")
    if active is None or active["id"] != approval["run_id"] or _find(pending, "id", approval["id"]):
        return snapshot  # already shown, or a repeat from a run that has ended
    return {**snapshot, "pending_approvals": [*pending, approval]}


def _approval_resolved(snapshot: Snapshot, event: Event) -> Snapshot:
    pending = [a for a in snapshot["pending_approvals"] if a["id"] != event["approval_id"]]
    return {**snapshot, "pending_approvals": pending}


def _steering_updated(snapshot: Snapshot, event: Event) -> Snapshot:
    latest = snapshot.get("latest_run")
    if latest is None or latest["id"] != event["run_id"]:
        return snapshot  # a repeat from an older run (the snapshot's steering is the latest run's)
    others = [s for s in snapshot["steering"] if s["id"] != event["steering_id"]]
    if event["status"] not in ("queued", "discarded"):
        return {**snapshot, "steering": others}  # applied: it is a user message now
    existing = _find(snapshot["steering"], "id", event["steering_id"]) or {"created_at": None}
    steering = {**existing, "id": event["steering_id"], "run_id": event["run_id"], "text": event["text"],
                "status": event["status"], "reason": event["reason"] or None, "created_by": event.get("created_by")}
    if existing.get("id") is None:
        return {**snapshot, "steering": [*others, steering]}
    return {**snapshot, "steering": [steering if s["id"] == steering["id"] else s for s in snapshot["steering"]]}


def _session_updated(snapshot: Snapshot, event: Event) -> Snapshot:
    return {**snapshot, "title": event["title"], "model": event["model"], "updated_at": event["updated_at"]}


_HANDLERS: dict[str, Callable[[Snapshot, Event], Snapshot]] = {
    "session.updated": _session_updated,
    "run.state": _run_state,
    "message.delta": _message_delta,
    "message.completed": _message_completed,
    "messages.superseded": _messages_superseded,
    "approval.requested": _approval_requested,
    "approval.resolved": _approval_resolved,
    "steering.updated": _steering_updated,
    "run.finished": _run_finished,
}
