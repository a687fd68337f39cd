"""The JSON HTTP API (documented in docs/api.md). Each view parses the body and runs one command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from django.views.decorators.csrf import csrf_exempt
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from harness import client_commands
from harness.uploads import read_upload

from .auth import api_view
from .responses import error_response, json_body


def _respond(result: client_commands.Result) -> JsonResponse:
    status, body = result
    return JsonResponse(body, status=status)


@api_view("GET")
def models(request: HttpRequest) -> JsonResponse:
    return _respond(client_commands.list_models(request.user, {}))


@api_view("GET", "POST")
def sessions(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return _respond(client_commands.list_sessions(request.user, request.GET.dict()))
    return _respond(client_commands.create_session(request.user, json_body(request, required=False)))


@api_view("GET", "PATCH", "DELETE")
def session(request: HttpRequest, session_id: str) -> JsonResponse:
    if request.method == "PATCH":
        return _respond(client_commands.update_session(request.user, json_body(request), session_id=session_id))
    if request.method == "DELETE":
        return _respond(client_commands.delete_session(request.user, {}, session_id=session_id))
    return _respond(client_commands.get_session(request.user, {}, session_id=session_id))


@api_view("GET")
def members(request: HttpRequest, session_id: str) -> JsonResponse:
    return _respond(client_commands.get_members(request.user, {}, session_id=session_id))


@api_view("PUT", "DELETE")
def member(request: HttpRequest, session_id: str, kind: str, name: str) -> JsonResponse:
    if request.method == "DELETE":
        return _respond(client_commands.remove_member(request.user, {}, session_id=session_id, kind=kind, name=name))
    return _respond(client_commands.set_member(request.user, json_body(request), session_id=session_id, kind=kind,
                                               name=name))


@api_view("GET")
def export(request: HttpRequest, session_id: str) -> HttpResponse:
    """A download of the session's whole record: `?format=json` (the default) or `?format=markdown`."""
    query = {"format": request.GET["format"]} if "format" in request.GET else {}
    _, body = client_commands.export_session(request.user, query, session_id=session_id)
    if query.get("format") == "markdown":
        response = HttpResponse(client_commands.export_markdown(body), content_type="text/markdown; charset=utf-8")
        extension = "md"
    else:
        response = JsonResponse(body, json_dumps_params={"indent": 2, "ensure_ascii": False})
        extension = "json"
    response["Content-Disposition"] = f'attachment; filename="session-{body["session"]["id"]}.{extension}"'
    return response


def _read_upload(request: HttpRequest, session_id: str) -> None:
    """Before the CSRF check reads the body: refuse a caller who may not upload, then read the file within
    the limit (harness/uploads.py)."""
    if request.method == "POST":
        client_commands.check_can_upload(request.user, session_id=session_id)
        request.upload = read_upload(request)


@api_view("GET", "POST", prepare=_read_upload)
def files(request: HttpRequest, session_id: str) -> JsonResponse:
    """GET: the workspace's files; POST: upload one (multipart/form-data, or a raw body with ?name=)."""
    if request.method == "GET":
        return _respond(client_commands.list_files(request.user, {}, session_id=session_id))
    upload = request.upload
    try:
        return _respond(client_commands.upload_file(request.user, session_id=session_id, name=upload.name,
                                                    content=upload.content))
    finally:
        upload.content.close()


# Downloads are never rendered by the browser: attachments, a safe type (workspace_files.safe_content_type),
# and a CSP that would sandbox the document even if a browser did.
DOWNLOAD_CSP = "default-src 'none'; sandbox"


DOWNLOAD_CHUNK_BYTES = 256 * 1024


async def _file_chunks(opened) -> AsyncIterator[bytes]:
    """The file's first `opened.size` bytes (its size when opened: the body matches Content-Length), read on a
    worker thread. An async iterator: Django under ASGI would read a sync one (FileResponse) whole into memory
    before sending a byte."""
    remaining = opened.size
    try:
        while remaining > 0 and (chunk := await asyncio.to_thread(opened.file.read,
                                                                   min(DOWNLOAD_CHUNK_BYTES, remaining))):
            remaining -= len(chunk)
            yield chunk
    finally:
        opened.file.close()


@api_view("GET")
def file(request: HttpRequest, session_id: str, path: str) -> StreamingHttpResponse:
    opened = client_commands.open_file(request.user, session_id=session_id, path=path)
    response = StreamingHttpResponse(_file_chunks(opened), content_type=opened.content_type)
    response["Content-Length"] = str(opened.size)
    response["Content-Disposition"] = content_disposition_header(True, opened.name)
    response["Content-Security-Policy"] = DOWNLOAD_CSP
    return response


@api_view("POST")
def runs(request: HttpRequest, session_id: str) -> JsonResponse:
    return _respond(client_commands.start(request.user, json_body(request), session_id=session_id))


@api_view("POST")
def stop(request: HttpRequest, session_id: str) -> JsonResponse:
    return _respond(client_commands.stop(request.user, json_body(request, required=False), session_id=session_id))


@api_view("POST")
def steer(request: HttpRequest, session_id: str) -> JsonResponse:
    return _respond(client_commands.steer(request.user, json_body(request), session_id=session_id))


@api_view("GET")
def run(request: HttpRequest, run_id: str) -> JsonResponse:
    return _respond(client_commands.get_run(request.user, {}, run_id=run_id))


@api_view("POST")
def approval(request: HttpRequest, approval_id: str) -> JsonResponse:
    return _respond(client_commands.decide(request.user, json_body(request), approval_id=approval_id))


@csrf_exempt  # an unknown path is a 404 for every method, never the CSRF failure page
def not_found(request: HttpRequest, exception=None) -> JsonResponse:
    return error_response(404, "not_found", f"no API endpoint at {request.path}")
