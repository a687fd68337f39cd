"""A user uploads a file into a session's workspace: the file lands there, and the transcript gets a note the
model also sees ("uploaded report.csv, 12 KB"). A collaborator's or the owner's act (`permissions`).

The file is written first, outside any transaction (copying megabytes must not hold the database's write
lock), then the note and the upload's record are written in one transaction, and `message.completed` is
published after it commits. An upload while a run is live is allowed: the file lands at once, and the note
reaches the model at its next turn (`engine/transcript.py` keeps it after the tool results of a turn in
flight). A file of the same name is replaced.
"""

from __future__ import annotations

from typing import BinaryIO

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .. import events, permissions
from ..engine.workspace import session_workspace
from ..models import Message, MessageRole, WorkspaceUpload
from ..sandbox import workspace_prepare
from ..workspace_files import StoreFailed, in_flight, workspace_file_store
from .errors import InvalidInput, ServiceError

MAX_NAME_BYTES = 255


class WorkspaceUnavailable(ServiceError):
    """The workspace cannot be written (its root unreachable, the disk full): nothing was recorded; retry."""

    code = "workspace_unavailable"
    status = 503


def clean_upload_name(name: str) -> str:
    """The name an upload is stored under: its last path component (`../x` → `x`, `/etc/passwd` → `passwd`,
    `C:\\a\\b.txt` → `b.txt`). Refused (400 `invalid_name`): NUL or other control characters, an empty name,
    `.` or `..`, more than 255 bytes of UTF-8."""
    if not isinstance(name, str):
        raise InvalidInput("invalid_name", "the file name must be text")
    if any(not character.isprintable() and character != " " for character in name):
        raise InvalidInput("invalid_name", "the file name contains a control character (NUL, newline, …)")
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", ".."):
        raise InvalidInput("invalid_name", f"{name!r} does not name a file")
    if in_flight(base):
        raise InvalidInput("invalid_name", f"{base!r} is the name an upload has while it is written")
    try:
        encoded = base.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("invalid_name", "the file name is not valid Unicode") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidInput("invalid_name", f"the file name is over {MAX_NAME_BYTES} bytes")
    return base


def human_size(size: int) -> str:
    """12 bytes, 12 KB, 3.4 MB, 1.2 GB (units of 1024)."""
    if size < 1024:
        return f"{size} byte{'' if size == 1 else 's'}"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if value >= 10 or unit == "KB" else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def upload_note(name: str, size: int) -> str:
    return f"uploaded {name}, {human_size(size)}"


def file_upload(*, session_id, user: AbstractBaseUser, name: str, content: BinaryIO) -> WorkspaceUpload:
    """Store `content` (a readable binary file, already within the upload limit) as `name` in the session's
    workspace and note it in the transcript. NotFound/Forbidden as `permissions.session_for(need="act")`;
    InvalidInput `invalid_name` for a name that cannot be made safe or is taken by a directory."""
    cleaned = clean_upload_name(name)
    session = permissions.session_for(user=user, session_id=session_id, need="act")
    try:
        size = workspace_file_store(workspace_prepare(session_workspace(session.id)), cleaned, content)
    except StoreFailed as exc:
        raise InvalidInput("invalid_name", str(exc)) from None
    except OSError as exc:  # said without the server's paths
        raise WorkspaceUnavailable(f"the file could not be written: {exc.strerror or type(exc).__name__}") from None
    with transaction.atomic():
        session = permissions.session_for(user=user, session_id=session_id, need="act", lock=True)
        now = timezone.now()
        message = Message.objects.create(session=session, role=MessageRole.NOTE, text=upload_note(cleaned, size),
                                         author=user, created_at=now, updated_at=now)
        upload = WorkspaceUpload.objects.create(session=session, name=cleaned, size=size, uploaded_by=user,
                                                message=message, created_at=now)
        session.updated_at = now
        session.save(update_fields=["updated_at"])
        events.publish_on_commit(session.id, events.message_completed(message=message))
    return upload
