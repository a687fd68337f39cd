"""The session page's live parts, rendered from the database: composer, status badge, transcript messages,
approval cards, steering. HTTP responses and the page's WebSocket both use these, so a tab that reconnects
gets exactly what a fresh page load would show.

Every fragment's root element has a stable id; `oob=True` adds `hx-swap-oob` so htmx swaps it by id
wherever it arrives (a WebSocket message, or an HTTP response's extra fragments).
"""

from __future__ import annotations

import json
from typing import Literal

from django.template.loader import render_to_string

from orchestrator import selectors, selectors_sharing
from orchestrator.mcp.config import split_tool_name
from orchestrator.models import TERMINAL_STATES, Approval, Message, Run, Session
from orchestrator.providers.catalog import model_choices, session_model

from . import markdown
from .markdown import MarkdownStream

ComposerMode = Literal["idle", "running", "stopping"]

STATE_WORDS = {
    "provisioning": "Starting",
    "awaiting_assistant": "Waiting for the model",
    "assistant_streaming": "Writing",
    "assistant_finished": "Answer received",
    "function_prepare": "Preparing tools",
    "awaiting_approval": "Waiting for your approval",
    "function_execute": "Running tools",
    "function_finalize": "Tools finished",
    "steering_check": "Checking for steering",
    "tearing_down": "Finishing",
    "completed": "Completed",
    "stopped": "Stopped",
    "failed": "Failed",
}

# Arguments longer than this are cut with a "show more" toggle on approval cards.
ARGUMENTS_PREVIEW_CHARS = 400


def composer_mode(run: Run | None) -> ComposerMode:
    if run is None or run.state in TERMINAL_STATES:
        return "idle"
    return "stopping" if run.stop_requested else "running"


# A run's composer only moves forward: running → stopping → idle (its end).
_PHASE = {"running": 1, "stopping": 2, "idle": 3}


def composer_rank(run: Run | None) -> str:
    """Orders composers: "<run created, µs>.<phase>". A tab keeps the composer with the highest rank, so an
    HTTP response rendered before a socket update that arrived first (a slow link) cannot turn the clock
    back (static/js/session.js)."""
    if run is None:
        return "0.0"
    return f"{int(run.created_at.timestamp() * 1_000_000)}.{_PHASE[composer_mode(run)]}"


def _render(template: str, context: dict, oob: bool) -> str:
    return render_to_string(template, {**context, "oob": oob})


def composer_html(session: Session, run: Run | None, *, error: str = "", clear_draft: bool = False,
                  oob: bool = False, watching: bool = False) -> str:
    """The composer in the mode the run's status implies. `clear_draft` marks a successful send's response;
    `watching`: the reader is a viewer, who sees the run's mode but can neither send nor stop."""
    return _render(
        "portal/fragments/composer.html",
        {"session": session, "run": run, "mode": composer_mode(run), "rank": composer_rank(run), "error": error,
         "clear_draft": clear_draft, "watching": watching},
        oob,
    )


def run_status_html(session: Session, run: Run | None, *, activity: str = "", oob: bool = False) -> str:
    return _render(
        "portal/fragments/run_status.html",
        {"session": session, "run": run, "words": STATE_WORDS.get(run.state, run.state) if run else "",
         "mode": composer_mode(run), "activity": activity},
        oob,
    )


def _body(message: Message, streams: dict[int, MarkdownStream] | None) -> dict:
    """How a message's text shows: an answer as rendered Markdown, anything else as text. A streaming answer
    is split into its finished blocks (`#msg-N-md`) and its open tail (`#msg-N-tail`), which the page's
    socket extends and replaces (`answer_delta_html`); `streams` (when given) receives its renderer, so the
    socket continues exactly where the page starts."""
    if message.role != "assistant":
        return {"m": message}
    if message.status != "streaming":
        return {"m": message, "html": markdown.render(message.text)}
    stream = MarkdownStream()
    finished, tail = stream.push(message.text)
    if streams is not None:
        streams[message.id] = stream
    return {"m": message, "html": finished, "tail": tail, "streaming": True}


def message_html(message: Message, *, oob: bool = False, streams: dict[int, MarkdownStream] | None = None) -> str:
    return _render("portal/fragments/message.html", _body(message, streams), oob)


def message_append_html(message: Message, *, streams: dict[int, MarkdownStream] | None = None) -> str:
    """A new message, appended to the transcript (htmx appends the wrapper's children)."""
    return f'<div hx-swap-oob="beforeend:#transcript">{message_html(message, streams=streams)}</div>'


def superseded_html(message_ids: list[int]) -> str:
    """Messages an edit or a regeneration replaced, taken out of the transcript."""
    return "".join(f'<li id="msg-{int(i)}" hx-swap-oob="delete"></li>' for i in message_ids)


def answer_delta_html(message_id: int, finished: str, tail: str) -> str:
    """A streaming answer's progress (already sanitised HTML): blocks it finished are appended, its open tail
    replaced. Built by hand: it is the hottest fragment, a few times a second per streaming answer per tab."""
    appended = f'<div id="msg-{message_id}-md" hx-swap-oob="beforeend">{finished}</div>' if finished else ""
    return f'{appended}<div id="msg-{message_id}-tail" hx-swap-oob="innerHTML">{tail}</div>'


def transcript_html(session: Session, *, page: tuple[list[Message], bool] | None = None, oob: bool = False,
                    streams: dict[int, MarkdownStream] | None = None) -> str:
    """The transcript's newest page (`selectors.transcript_page`), under a "load older" sentinel if there are
    older messages."""
    messages, has_older = selectors.transcript_page(session) if page is None else page
    return _render("portal/fragments/transcript.html", _page(session, messages, has_older, streams), oob)


def older_messages_html(session: Session, *, before: int) -> str:
    """The page of messages before message `before`, to replace the sentinel that asked for them: their items,
    under a new sentinel if there are older ones still."""
    messages, has_older = selectors.transcript_page(session, before=before)
    return _render("portal/fragments/older_messages.html", _page(session, messages, has_older, None), False)


def _page(session: Session, messages: list[Message], has_older: bool,
          streams: dict[int, MarkdownStream] | None) -> dict:
    return {"session": session, "items": [_body(m, streams) for m in messages],
            "older_than": messages[0].id if has_older else None}


def approvals_html(session: Session, *, oob: bool = False) -> str:
    approvals = selectors.run_approvals(selectors.latest_run(session.id))
    return _render("portal/fragments/approvals.html", {"approvals": [_card(a) for a in approvals]}, oob)


def _card(approval: Approval) -> dict:
    arguments = json.dumps(approval.function_call.arguments, indent=2, ensure_ascii=False)
    mcp = split_tool_name(approval.function_call.name)
    return {
        "approval": approval,
        "call": approval.function_call,
        "mcp_server": mcp[0] if mcp else "",
        "mcp_tool": mcp[1] if mcp else "",
        "preview": arguments[:ARGUMENTS_PREVIEW_CHARS],
        "rest": arguments[ARGUMENTS_PREVIEW_CHARS:],
    }


def steering_html(session: Session, run: Run | None, *, error: str = "", oob: bool = False) -> str:
    steering = selectors.run_steering(run)
    return _render(
        "portal/fragments/steering.html",
        {"session": session, "run": run, "mode": composer_mode(run), "steering": steering, "error": error},
        oob,
    )


def model_picker_html(session_id, model: str, *, error: str = "", oob: bool = False) -> str:
    """The session's model choice; `model` is the session's stored choice ("" for the default)."""
    return _render(
        "portal/fragments/model_picker.html",
        {"session_id": session_id, "choices": model_choices(), "current": session_model(model), "error": error},
        oob,
    )


def session_title_html(title: str) -> str:
    return render_to_string("portal/fragments/session_title.html", {"title": title, "oob": True})


def receipt_panel_html() -> str:
    """The (empty) receipt panel, swapped in to close a receipt that no longer describes the latest run."""
    return '<div id="receipt" class="receipt-panel" hx-swap-oob="true"></div>'


def receipt_html(run: Run) -> str:
    return render_to_string("portal/fragments/receipt.html",
                            {"run": run, "receipt": run.receipt or {}, "calls": selectors.run_calls(run)})


def snapshot_html(session: Session, *, page: tuple[list[Message], bool], streams: dict[int, MarkdownStream],
                  watching: bool = False) -> str:
    """Everything live on the page, for a (re)connecting tab: it converges to the truth. `page` is the
    transcript's newest page (`selectors.transcript_page`), read once by the caller, who must know exactly
    which messages it sent; `streams` receives the renderers of the answers still streaming."""
    run = selectors.latest_run(session.id)
    return "".join(
        [
            composer_html(session, run, oob=True, watching=watching),
            run_status_html(session, run, oob=True),
            transcript_html(session, page=page, oob=True, streams=streams),
            approvals_html(session, oob=True),
            steering_html(session, run, oob=True),
            model_picker_html(session.id, session.model, oob=True),
        ]
    )


def presence_html(users: list[str], *, oob: bool = False) -> str:
    """Who has the page open right now ("Here now: …"; `harness/portal/presence.py`), shown once it is more than
    the reader."""
    return _render("portal/fragments/presence.html", {"users": users}, oob)


def share_html(session: Session, *, error: str = "", form: dict | None = None) -> str:
    """The Share dialog's body: the owner, the members (role, remove) and the add form (`form`: what was posted,
    kept when refused, with `error`)."""
    members = selectors_sharing.session_members(session)
    return _render(
        "portal/fragments/share.html",
        {"session_id": session.id, "owner": members["owner"], "members": members["members"],
         "shared": bool(members["members"]), "error": error, "form": form or {}},
        False,
    )
