"""A session's workspace as files people see: what is in it (uploads and what the agent wrote), one file opened
for download, and a file stored into it (for `services/uploads.py`).

Path safety is the file tools' (`tools/builtin/files.py`: `confined_path`, `open_beneath`): nothing here
follows a symlink that leads out of the workspace. The listing walks with directory descriptors and lists
regular files only (symlinks are not listed, and a symlinked directory is not entered); a download opens the
file one component at a time with O_NOFOLLOW, so a symlink swapped in after the check fails the download.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .engine.workspace import session_workspace
from .models import Session, WorkspaceUpload
from .sandbox import sandbox_uid
from .tools.builtin.files import CHUNK_BYTES, DIRECTORY_FLAGS, confined_path, open_beneath
from .tools.registry import ToolError

# A listing names at most this many files (the newest first), of at most MAX_SCANNED found (a workspace with a
# huge tree, node_modules say, is not walked to its end on every page load); `truncated` says when there were more.
MAX_LISTED = 1000
MAX_SCANNED = 10_000
MAX_DEPTH = 64  # directories deeper than this are not looked into

# Types a browser may be handed as they are; anything else (HTML, SVG, scripts, XML…) is
# application/octet-stream. Every download is an attachment too, and carries a sandboxing CSP.
SAFE_TYPES = {
    "text/plain", "text/csv", "text/markdown", "application/json", "application/pdf", "application/zip",
    "application/gzip", "image/png", "image/jpeg", "image/gif", "image/webp",
}


class NoSuchFile(Exception):
    """Not a regular file of the workspace (missing, a directory, a FIFO, a symlink out of it, a bad path)."""


class StoreFailed(Exception):
    """The upload could not be put in the workspace under its name (a directory of that name, say)."""


class _Enough(Exception):
    pass


def _regular_files(root: Path) -> tuple[list[tuple[float, str, int]], bool]:
    """(mtime, relative path, size) of the regular files below `root`, and whether all were found. Each
    directory is opened by descriptor with O_NOFOLLOW from its parent's, so a symlink is never followed, even
    one swapped in for a directory during the walk; depth first, so at most MAX_DEPTH descriptors are open."""
    entries: list[tuple[float, str, int]] = []
    unlisted = False  # names no URL or JSON can carry (not UTF-8, control characters): left out, and said so

    def walk(directory: int, prefix: str, depth: int) -> None:
        nonlocal unlisted
        subdirectories = []
        try:
            listing = os.scandir(directory)
        except OSError:
            return  # unreadable: list what else there is
        with listing:
            for entry in listing:
                if not listable(entry.name):
                    unlisted = True
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subdirectories.append(entry.name)
                    elif entry.is_file(follow_symlinks=False) and not in_flight(entry.name):
                        info = entry.stat(follow_symlinks=False)
                        entries.append((info.st_mtime, prefix + entry.name, info.st_size))
                except OSError:
                    continue  # gone since it was listed
                if len(entries) > MAX_SCANNED:
                    raise _Enough
        if depth >= MAX_DEPTH:
            return
        for name in subdirectories:
            try:
                child = os.open(name, DIRECTORY_FLAGS, dir_fd=directory)
            except OSError:
                continue  # gone, replaced by a symlink, or unreadable
            try:
                walk(child, f"{prefix}{name}/", depth + 1)
            finally:
                os.close(child)

    try:
        top = os.open(root, DIRECTORY_FLAGS)
    except OSError:  # no workspace yet
        return entries, True
    try:
        walk(top, "", 0)
    except _Enough:
        return entries[:MAX_SCANNED], False
    finally:
        os.close(top)
    return entries, not unlisted


def listable(name: str) -> bool:
    """Whether a file name can be listed and downloaded: valid UTF-8 (os.scandir hands undecodable bytes back
    as surrogates) with no control character (a newline, say)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return all(character.isprintable() or character == " " for character in name)


def workspace_listing(session: Session) -> dict:
    """`{"files": [{"name", "path", "size", "modified_at", "uploaded_by"}], "truncated"}`, newest first.
    `uploaded_by` is the username of the latest upload of that path, if it was uploaded (else null)."""
    root = session_workspace(session.id)
    entries, scanned_all = _regular_files(root)
    entries.sort(key=lambda entry: (-entry[0], entry[1]))
    listed = entries[:MAX_LISTED]
    uploaders = dict(
        WorkspaceUpload.objects.filter(session=session, name__in=[path for _, path, _ in listed])
        .order_by("id").values_list("name", "uploaded_by__username")
    )  # the latest upload of a name wins
    files = [
        {"name": os.path.basename(path), "path": path, "size": size,
         "modified_at": datetime.fromtimestamp(mtime, tz=UTC).isoformat(), "uploaded_by": uploaders.get(path)}
        for mtime, path, size in listed
    ]
    return {"files": files, "truncated": len(entries) > len(listed) or not scanned_all}


@dataclass
class OpenedFile:
    file: BinaryIO
    name: str
    size: int
    content_type: str


def workspace_file_open(session: Session, path: str) -> OpenedFile:
    """The workspace's regular file at `path` (relative), opened for reading; NoSuchFile otherwise."""
    workspace = session_workspace(session.id)
    if not workspace.is_dir():
        raise NoSuchFile(path)
    try:
        root, parts = confined_path(workspace, path)
        if not parts:
            raise NoSuchFile(path)
        # O_NONBLOCK: a FIFO must not hang the request on open (it is refused just below).
        fd = open_beneath(root, parts, os.O_RDONLY | os.O_NONBLOCK)
    except (ToolError, OSError):
        raise NoSuchFile(path) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NoSuchFile(path)
    os.set_blocking(fd, True)
    name = parts[-1]
    return OpenedFile(file=os.fdopen(fd, "rb"), name=name, size=info.st_size, content_type=safe_content_type(name))


def safe_content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed not in SAFE_TYPES:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def in_flight(name: str) -> bool:
    """An upload being written (workspace_file_store's temporary name): never listed."""
    return name.startswith(UPLOAD_PREFIX) and name.endswith(".part")


UPLOAD_PREFIX = ".upload-"


def workspace_file_store(workspace: Path, name: str, content: BinaryIO) -> int:
    """Copy `content` into `workspace/name` (a single, already cleaned name) and return its size. Written under
    a temporary name and renamed over: the agent never sees half a file, and a symlink of that name is
    replaced, never followed. StoreFailed when a directory of that name is in the way."""
    directory = os.open(workspace, DIRECTORY_FLAGS)
    temporary = f"{UPLOAD_PREFIX}{uuid.uuid4().hex}.part"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=directory)
        size = 0
        try:
            if (sandbox_user := sandbox_uid()) is not None:
                os.fchown(fd, *sandbox_user)
            while chunk := content.read(CHUNK_BYTES):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                size += len(chunk)
        except BaseException:
            os.unlink(temporary, dir_fd=directory)
            raise
        finally:
            os.close(fd)
        try:
            os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        except OSError as exc:
            os.unlink(temporary, dir_fd=directory)
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise StoreFailed(f"a directory named {name!r} is in the workspace") from None
            raise
        return size
    finally:
        os.close(directory)
