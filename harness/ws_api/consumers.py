"""The JSON WebSocket API (docs/api.md, "JSON WebSocket API"): one socket per session.

The consumer only translates: a frame becomes a call of the same command the HTTP API runs
(`harness/client_commands.py`), its `(status, body)` becomes a `<type>.result` frame and a `CommandError` an `error`
frame; the session's events (`orchestrator/events.py`) are forwarded as they are. Nothing a client sends
closes the socket.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import InterfaceError, OperationalError

from harness import client_commands
from harness.api.responses import parse_json_object
from harness.client_commands import CommandError
from harness.groups import CLOSE_RESYNC, SessionGroupMember
from harness.middleware import STORE_UNAVAILABLE
from harness.ws_api.auth import bearer_token
from harness.streaming import GAP, StreamTracker
from orchestrator import events, selectors
from orchestrator.services.tokens import user_for_token

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024  # the HTTP API's body limit, in UTF-8 bytes

CLOSE_UNAUTHENTICATED = 4401
CLOSE_RATE_LIMITED = 4429
CLOSE_NOT_FOUND = 4404


def _decide(user, data: dict[str, Any], *, session_id: str) -> client_commands.Result:
    approval_id = client_commands.field(data, "approval_id", str)
    # A socket speaks for its own session only: another session's approval is not found here (decide it on
    # that session's socket, or over HTTP).
    return client_commands.decide(user, data, approval_id=approval_id, session_id=session_id)


def _token_still_valid(scope, user) -> bool:
    """The socket's token still names its user (not deleted, user still active): checked per command."""
    token = bearer_token(scope)
    current = user_for_token(token) if token else None
    return current is not None and current.pk == user.pk


REVOKED = object()  # _checked_call's answer when the socket's token no longer holds


def _checked_call(scope, user, command: str | None, data: dict[str, Any], *, session_id: str):
    """REVOKED unless the socket's token still holds; else `command`'s (status, body), or None when the frame
    names no command. The command's errors propagate."""
    if not _token_still_valid(scope, user):
        return REVOKED
    return COMMANDS[command](user, data, session_id=session_id) if command is not None else None


# Frame type -> the command it runs (looked up at call time, so the command module stays the one source).
COMMANDS: dict[str, Callable[..., client_commands.Result]] = {
    "run.start": lambda user, data, *, session_id: client_commands.start(user, data, session_id=session_id),
    "run.stop": lambda user, data, *, session_id: client_commands.stop(user, data, session_id=session_id),
    "approval.decide": _decide,
    "steer": lambda user, data, *, session_id: client_commands.steer(user, data, session_id=session_id),
    "session.update": lambda user, data, *, session_id: client_commands.update_session(user, data, session_id=session_id),
}
ENVELOPE = ("type", "request_id")


class FrameError(Exception):
    """A frame the API cannot read as a command (answered with an error frame; the socket stays open)."""

    def __init__(self, code: str, detail: str, *, status: int = 400) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


def _error(code: str, detail: Any, *, status: int, request_id: Any = None, command: str | None = None) -> dict:
    return {"type": "error", "code": code, "detail": detail, "http_status": status, "request_id": request_id,
            "command": command}


def _request_id(frame: dict[str, Any]) -> str | int | None:
    value = frame.get("request_id")
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    raise FrameError("invalid_field", "'request_id' must be a string or an integer")


class ApiConsumer(SessionGroupMember, AsyncWebsocketConsumer):
    metrics_kind = "api"
    user = None
    session_id: str | None = None  # `group` is set once the socket is open for a session (joined to its events)

    # --- connection --------------------------------------------------------------------------------------

    async def connect(self) -> None:
        # Accept before closing: a close before accept is an HTTP 403 handshake failure and loses the code.
        await self.accept()
        if self.scope.get("rate_limited"):
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session_id = self.scope["url_route"]["kwargs"].get("session_id")
        session = await database_sync_to_async(selectors.session_for_user)(session_id=session_id, user=user)
        if session is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user, self.session_id = user, str(session.id)  # canonical: the group name events are sent to
        # Join the group before reading the snapshot: an event committed meanwhile is then queued and
        # delivered after the snapshot (a duplicate at worst, which clients merge), never lost in between.
        await self.join_group(events.session_group(self.session_id), session_id=self.session_id, user=user)
        try:
            snapshot = await database_sync_to_async(selectors.session_snapshot)(session)
        except Exception:
            logger.exception("JSON WebSocket API: no snapshot for session %s", self.session_id)
            await self.disconnect(CLOSE_RESYNC)
            await self.close(code=CLOSE_RESYNC)  # the client reconnects for a new snapshot
            return
        self.tracker = StreamTracker()
        self.tracker.hold_all((m["id"], m["text"]) for m in snapshot["messages"])
        await self.send_json({"type": "session.snapshot", **snapshot})

    async def disconnect(self, code: int) -> None:
        await self.leave_group()

    # --- server -> client --------------------------------------------------------------------------------

    async def session_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event["type"] == "message.delta":
            piece = self.tracker.append(event)
            if piece is GAP:
                piece = await database_sync_to_async(self.tracker.fill_gap)(event)
            if not piece:
                return
            event = {**event, "offset": piece[0], "text": piece[1]}
        elif event["type"] == "message.completed":
            self.tracker.hold(event["message_id"], len(event["text"]))
        await self.send_json(event)

    async def send_json(self, content: dict[str, Any]) -> None:
        # ASCII-escaped: text that is not valid Unicode (a lone surrogate in a tool's output, say) still
        # makes a valid frame instead of failing to encode.
        frame = json.dumps(content)
        try:
            await self.send(text_data=frame)
        except Exception:  # noqa: BLE001 - the client left while this was on its way; its disconnect cleans up
            logger.debug("JSON socket closed before a frame could be sent", exc_info=True)

    # --- client -> server --------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.group is None:
            return  # closed by connect(); the client has not seen the close yet
        request_id = command = None
        try:
            if text_data is None:
                raise FrameError("invalid_frame", "send JSON text frames, not binary frames")
            if len(text_data) > MAX_FRAME_BYTES or len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
                raise FrameError("frame_too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes of UTF-8",
                                 status=413)
            try:
                frame = parse_json_object(text_data, what="frame")
            except CommandError as exc:
                raise FrameError(exc.code, exc.detail, status=exc.status) from None
            kind = frame.get("type")
            # Named as soon as the frame is read: every error about it says which command it was.
            command = kind if isinstance(kind, str) and kind in COMMANDS else None
            request_id = _request_id(frame)
            data = {key: value for key, value in frame.items() if key not in ENVELOPE}
            # The token check and the command in one trip to the database thread (a command's first thread hop).
            outcome = await database_sync_to_async(_checked_call)(self.scope, self.user, command, data,
                                                                  session_id=self.session_id)
            if outcome is REVOKED:
                # Revoked (or its user deactivated) since the socket opened: say so, then close like a
                # connect without a valid token would have.
                await self.send_json(_error("unauthenticated", "the API token is no longer valid", status=401,
                                            request_id=request_id, command=command))
                await self.disconnect(CLOSE_UNAUTHENTICATED)
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
            if kind == "ping":
                await self.send_json({"type": "ping.result", "request_id": request_id})
                return
            if command is None:
                known = ", ".join(["ping", *COMMANDS])
                raise FrameError("unknown_type", f"'type' must be one of: {known}")
            status, body = outcome
            # Exactly the HTTP API's body, under an envelope whose keys no body uses.
            await self.send_json({"type": f"{kind}.result", "request_id": request_id, "http_status": status, **body})
        except FrameError as exc:
            await self.send_json(_error(exc.code, exc.detail, status=exc.status, request_id=request_id,
                                        command=command))
        except CommandError as exc:
            await self.send_json(_error(exc.code, exc.detail, status=exc.status, request_id=request_id,
                                        command=command))
        except (OperationalError, InterfaceError):
            logger.warning("JSON WebSocket API: database unavailable for session %s", self.session_id, exc_info=True)
            await self.send_json(_error("store_unavailable", STORE_UNAVAILABLE, status=503, request_id=request_id,
                                        command=command))
        except Exception:
            logger.exception("JSON WebSocket API: frame for session %s failed", self.session_id)
            await self.send_json(_error("internal_error", "the server could not handle this frame", status=500,
                                        request_id=request_id, command=command))
