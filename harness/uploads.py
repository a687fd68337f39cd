"""An upload's body, read once, within `HARNESS_UPLOAD_LIMIT_BYTES` while it streams: `multipart/form-data`
(one file part; Django's MultiPartParser with a handler of ours) or a raw body named by `?name=`. The file
goes to a temporary file on disk, never into memory; past the limit reading stops and the answer is
`413 body_too_large`. Every other problem is a JSON 400 (`invalid_upload`, `missing_file`, `missing_field`).

`read_upload` runs before the CSRF check of a session-cookie request (`api_view(prepare=…)`): Django's check
reads `request.POST`, which would otherwise parse the body with the default handlers, unlimited.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from harness.client_commands import CommandError

CHUNK_BYTES = 64 * 1024
# What a multipart body may carry beyond its file: boundaries and part headers.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass
class Upload:
    name: str
    content: BinaryIO  # at its start
    size: int


def _too_large(limit: int) -> CommandError:
    return CommandError(413, "body_too_large", f"uploads are limited to {limit} bytes")


class _LimitedFile(FileUploadHandler):
    """Streams the body's one file part into a temporary file, stopping the parse once it is past the limit."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.spool: BinaryIO | None = None
        self.name: str | None = None
        self.size = 0
        self.too_large = self.too_many = False

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        if self.spool is not None:
            self.too_many = True
            raise StopUpload(connection_reset=True)
        self.name, self.spool = file_name, tempfile.TemporaryFile()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.size += len(raw_data)
        if self.size > self.limit:
            self.too_large = True
            raise StopUpload(connection_reset=True)
        self.spool.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> None:
        return None  # kept on the handler, not in request.FILES


def read_upload(request: HttpRequest) -> Upload:
    """The request's file, or CommandError (413 body_too_large, 400 …)."""
    limit = settings.HARNESS_UPLOAD_LIMIT_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if request.content_type == "multipart/form-data":
        if declared > limit + MULTIPART_OVERHEAD_BYTES:
            raise _too_large(limit)  # refused before parsing it (the server has received it: docs/deploy.md)
        return _multipart(request, limit)
    if declared > limit:
        raise _too_large(limit)
    name = request.GET.get("name")
    if not name:
        raise CommandError(400, "missing_field", "name the file: ?name=<file name> (or send multipart/form-data)")
    spool, size = tempfile.TemporaryFile(), 0
    while chunk := request.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            spool.close()
            raise _too_large(limit)
        spool.write(chunk)
    spool.seek(0)
    return Upload(name=name, content=spool, size=size)


def _multipart(request: HttpRequest, limit: int) -> Upload:
    handler = _LimitedFile(request, limit)
    request.upload_handlers = [handler]
    try:
        request.FILES  # parses the body now, with our handler only
    except RequestDataTooBig:
        raise _too_large(limit) from None
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise CommandError(400, "invalid_upload", f"the multipart/form-data body cannot be read: {exc}") from None
    if handler.too_large or handler.too_many:
        if handler.spool is not None:
            handler.spool.close()
        if handler.too_many:
            raise CommandError(400, "invalid_upload", "send one file per request")
        raise _too_large(limit)
    if handler.spool is None:
        raise CommandError(400, "missing_file", "the multipart/form-data body has no file part (with a file name)")
    handler.spool.seek(0)
    return Upload(name=handler.name, content=handler.spool, size=handler.size)
