"""Every client command, once: the HTTP API and the JSON WebSocket API both call these, so a command answers
with exactly the same JSON whichever way it arrives.

A command takes the acting user and the request's already-parsed JSON object, and returns
`(status, body)`; bad input or a refused command raises `CommandError(status, code, detail)`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from orchestrator import exports, permissions, selectors, selectors_sharing, workspace_files
from orchestrator.providers.catalog import model_choices
from orchestrator.services.approvals import approval_decide
from orchestrator.services.errors import ServiceError
from orchestrator.services.members import session_member_remove, session_member_set
from orchestrator.services.runs import run_start, run_steer, run_stop
from orchestrator.services.sessions import session_create, session_delete, session_update
from orchestrator.services.uploads import file_upload

Result = tuple[int, dict[str, Any]]


class CommandError(Exception):
    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    @classmethod
    def from_service(cls, error: ServiceError) -> CommandError:
        return cls(error.status, error.code, error.detail)


def field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    """One typed field of a command's JSON object (400 missing_field / invalid_field)."""
    if name not in data or data[name] is None:
        if required:
            raise CommandError(400, "missing_field", f"{name!r} is required")
        return None
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CommandError(400, "invalid_field", f"{name!r} must be a {'string' if kind is str else kind.__name__}")
    return value


def _service(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except ServiceError as error:
        raise CommandError.from_service(error) from None


def not_found(what: str) -> CommandError:
    return CommandError(404, "not_found", f"no such {what}")


def list_models(user: AbstractBaseUser, data: dict[str, Any]) -> Result:
    return 200, {"models": model_choices()}


def _query_bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, "false")
    if value not in ("true", "false"):
        raise CommandError(400, "invalid_field", f"{name!r} must be 'true' or 'false'")
    return value == "true"


def _query_int(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6):
        raise CommandError(400, "invalid_field", f"{name!r} must be a positive integer")
    return int(value)


def list_sessions(user: AbstractBaseUser, data: dict[str, Any]) -> Result:
    """`data`: the query string's parameters (strings): q, scope, archived, limit, cursor."""
    page = _service(
        selectors_sharing.session_list, user=user, q=data.get("q", ""), scope=data.get("scope", "all"),
        archived=_query_bool(data, "archived"), limit=_query_int(data, "limit", selectors_sharing.DEFAULT_LIMIT),
        cursor=data.get("cursor") or None,
    )
    return 200, page.as_dict()


def create_session(user: AbstractBaseUser, data: dict[str, Any]) -> Result:
    session = _service(
        session_create, owner=user, title=field(data, "title", str, required=False),
        model=field(data, "model", str, required=False),
    )
    return 201, selectors.session_snapshot(session)


def get_session(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    session = selectors.session_for_user(session_id=session_id, user=user)
    if session is None:
        raise not_found("session")
    return 200, selectors.session_snapshot(session)


EXPORT_FORMATS = ("json", "markdown")


def export_session(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    """The session's whole record (`orchestrator.exports`); `data["format"]` (json, the default, or
    markdown) is checked here, the rendering is the caller's (`export_markdown`)."""
    if data.get("format", "json") not in EXPORT_FORMATS:
        raise CommandError(400, "invalid_field", "'format' must be json or markdown")
    session = selectors.session_for_user(session_id=session_id, user=user)
    if session is None:
        raise not_found("session")
    return 200, exports.session_export(session)


export_markdown = exports.export_markdown


def update_session(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    session = _service(
        session_update, session_id=session_id, user=user, title=field(data, "title", str, required=False),
        model=field(data, "model", str, required=False), archived=field(data, "archived", bool, required=False),
    )
    return 200, selectors.session_snapshot(session)


def delete_session(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    _service(session_delete, session_id=session_id, user=user)
    return 200, {"deleted": True}


def start(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    """`replace_from_message` (edit, regenerate): the latest user message's id; then `text` may be left out
    (regenerate: the replaced message's text). The service checks the id (invalid_replace_from_message,
    not_latest_user_message)."""
    replace = data.get("replace_from_message")
    run = _service(run_start, session_id=session_id, user=user, text=field(data, "text", str, required=replace is None),
                   replace_from_message=replace)
    return 201, {"run_id": str(run.id), "state": run.state}


def stop(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    run_id = field(data, "run_id", str, required=False)
    return 200, _service(run_stop, session_id=session_id, requested_by=user, run_id=run_id).as_dict()


def steer(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    steering = _service(run_steer, session_id=session_id, user=user, text=field(data, "text", str))
    return 202, selectors.steering_data(steering)


def get_run(user: AbstractBaseUser, data: dict[str, Any], *, run_id: Any) -> Result:
    run = selectors.run_for_user(run_id=run_id, user=user)
    if run is None:
        raise not_found("run")
    return 200, selectors.run_detail(run)


def decide(user: AbstractBaseUser, data: dict[str, Any], *, approval_id: Any, session_id: str | None = None) -> Result:
    """`session_id`: only an approval of that session (a session's socket speaks for that session only)."""
    decision = field(data, "decision", str)
    result = _service(approval_decide, approval_id=approval_id, user=user, decision=decision, session_id=session_id)
    return 200, result.as_dict()


def get_members(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    session = _service(permissions.session_for, user=user, session_id=session_id, need="view")
    return 200, selectors_sharing.session_members(session)


def set_member(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any, kind: str, name: str) -> Result:
    """Grant (or change) the role of the user or group `name`: `{"role": "viewer" | "collaborator"}`."""
    member = _service(session_member_set, session_id=session_id, user=user, kind=kind, name=name,
                      role=field(data, "role", str))
    return 200, selectors_sharing.session_members(member.session)


def remove_member(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any, kind: str, name: str) -> Result:
    session = _service(session_member_remove, session_id=session_id, user=user, kind=kind, name=name)
    return 200, selectors_sharing.session_members(session)


def list_files(user: AbstractBaseUser, data: dict[str, Any], *, session_id: Any) -> Result:
    """The session workspace's files (uploads and what the agent wrote), for anyone who can view it."""
    session = _service(permissions.session_for, user=user, session_id=session_id, need="view")
    return 200, workspace_files.workspace_listing(session)


def open_file(user: AbstractBaseUser, *, session_id: Any, path: str) -> workspace_files.OpenedFile:
    """One file of the session's workspace opened for download (404 not_found: no such regular file)."""
    session = _service(permissions.session_for, user=user, session_id=session_id, need="view")
    try:
        return workspace_files.workspace_file_open(session, path)
    except workspace_files.NoSuchFile:
        raise not_found("file") from None


def check_can_upload(user: AbstractBaseUser, *, session_id: Any) -> None:
    """Refuse an upload before its body is read: 404 for no role, 403 for a viewer."""
    _service(permissions.session_for, user=user, session_id=session_id, need="act")


def upload_file(user: AbstractBaseUser, *, session_id: Any, name: str, content) -> Result:
    upload = _service(file_upload, session_id=session_id, user=user, name=name, content=content)
    return 201, selectors.upload_data(upload)
