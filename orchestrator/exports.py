"""A session's whole record, for download (`GET /api/sessions/<id>/export?format=json|markdown`): reads only.

JSON: the snapshot clients get, plus every message (superseded ones too, marked), every run in full (its
calls, approvals, stop and receipt) and every steering message. Markdown: the transcript as a person reads
it — one heading per message with its author, role and time, tool calls and results in fenced blocks, and a
note for each stop and each run's end.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timezone

from .models import Approval, FunctionCall, Message, Run, Session, SteeringMessage
from .selectors import iso, message_data, run_detail, session_snapshot, steering_data

EXPORT_FORMAT = "harness-export/1"


def session_export(session: Session) -> dict:
    messages = (Message.objects.filter(session=session)
                .select_related("function_call", "author", "superseded_by").order_by("id"))
    runs = Run.objects.filter(session=session).select_related("stop_requested_by", "started_by").order_by("created_at")
    steering = SteeringMessage.objects.filter(session=session).select_related("created_by").order_by("created_at")
    # Every run's calls and approvals in one query each (not two per run), in the orders run_detail uses.
    calls, approvals = defaultdict(list), defaultdict(list)
    for call in FunctionCall.objects.filter(run__session=session).order_by("created_at", "position"):
        calls[call.run_id].append(call)
    for approval in (Approval.objects.filter(run__session=session).select_related("function_call", "decided_by")
                     .order_by("created_at")):
        approvals[approval.run_id].append(approval)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": iso(datetime.now(timezone.utc)),
        "owner": session.owner.get_username(),
        "session": session_snapshot(session),
        "messages": [
            {**message_data(m), "superseded_at": iso(m.superseded_at),
             "superseded_by_run": str(m.superseded_by_id) if m.superseded_by_id else None}
            for m in messages
        ],
        "runs": [run_detail(run, calls=calls[run.id], approvals=approvals[run.id]) for run in runs],
        "steering": [steering_data(s) for s in steering],
    }


def export_markdown(export: dict) -> str:
    """The export as Markdown: the current transcript in order, each run's end noted after its messages."""
    session = export["session"]
    lines = [f"# {_line(session['title'])}", "",
             f"Session `{session['id']}` · owner {export['owner']} · model `{session['model']}` · "
             f"exported {export['exported_at']}", ""]
    runs = {run["id"]: run for run in export["runs"]}
    calls = {(run["id"], call["call_id"]): call for run in export["runs"] for call in run["function_calls"]}
    current = [m for m in export["messages"] if m["superseded_at"] is None]
    asked = _calls_by_asking_message(export["runs"], current)
    for index, message in enumerate(current):
        who = message["author"] or message["role"]
        lines += [f"## {who} · {message['role']} · {message['created_at']}", ""]
        if message["role"] == "tool":
            call = calls.get((message["run_id"], message["call_id"]), {})
            lines += [f"Tool `{message['tool_name']}` with:", "", *_fenced(json.dumps(call.get("arguments", {}),
                      indent=2, ensure_ascii=False), "json"), "", "Result:", "", *_fenced(message["text"]), ""]
        else:
            lines += [message["text"] or "_(no text)_", ""]
            for call in asked.get(message["id"], ()):
                lines += [f"Asked to run `{call['name']}` with:", "",
                          *_fenced(json.dumps(call["arguments"], indent=2, ensure_ascii=False), "json"), ""]
        following = current[index + 1] if index + 1 < len(current) else None
        if message["run_id"] and (following is None or following["run_id"] != message["run_id"]):
            lines += _run_end(runs.get(message["run_id"]))
    return "\n".join(lines).rstrip() + "\n"


def _calls_by_asking_message(runs: list[dict], current: list[dict]) -> dict[int, list[dict]]:
    """Each call is listed under the last assistant message of its run written before the call was made."""
    written: dict[str, list[dict]] = defaultdict(list)  # a run's assistant messages, oldest first
    for message in current:
        if message["role"] == "assistant" and message["run_id"]:
            written[message["run_id"]].append(message)
    asked: dict[int, list[dict]] = defaultdict(list)
    for run in runs:
        messages = written.get(run["id"], [])
        times = [m["created_at"] for m in messages]
        for call in run["function_calls"]:
            before = bisect_right(times, call["created_at"])
            if call["call_id"] and before:
                asked[messages[before - 1]["id"]].append(call)
    return asked


def _run_end(run: dict | None) -> list[str]:
    if run is None or run["state"] not in ("completed", "stopped", "failed"):
        return []
    stop = run["stop"]
    if run["outcome"] == "stopped" and stop["requested"]:
        note = f"> **Stopped** by {stop['requested_by'] or 'the system'} at {stop['requested_at']}"
        if stop["latency_ms"] is not None:
            note += f" (the run ended {stop['latency_ms']:.0f} ms after the stop)"
    else:
        note = f"> Run {run['outcome'] or run['state']} at {run['finished_at']}"
        if run["error"]:
            note += f": {_line(run['error'])}"
    receipt = run.get("receipt") or {}
    if receipt:
        note += "  \n> Receipt: " + ", ".join(f"{key} {_line(json.dumps(value, ensure_ascii=False))}"
                                              for key, value in receipt.items() if value not in (None, [], {}, ""))
    return [note, ""]


def _fenced(text: str, language: str = "") -> list[str]:
    """A fenced block that the text itself cannot close: a fence longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", text, fence]


def _line(text: str) -> str:
    return " ".join(str(text).split())
