"""The session page's Files panel: the workspace's files with download links (the API's
`GET /api/sessions/<id>/files/<path>`), for anyone who can view the session. Uploads go to the API
(`static/js/uploads.js`: the page's session cookie and CSRF header)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from orchestrator import workspace_files
from orchestrator.services.uploads import human_size

from .auth import portal_login_required
from .views import _session_or_404


@portal_login_required
@require_GET
def session_files(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id)
    listing = workspace_files.workspace_listing(session)
    files = [{**entry, "size_text": human_size(entry["size"])} for entry in listing["files"]]
    return render(request, "portal/fragments/files.html",
                  {"session": session, "files": files, "truncated": listing["truncated"]})
