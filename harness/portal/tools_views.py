"""The session page's Tools panel: fetched when the user opens it (htmx), so a page load never waits for an
MCP server that is slow to start."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from orchestrator import selectors
from orchestrator.selectors_tools import session_tools

from .auth import portal_login_required
from .views import _session_or_404


@portal_login_required
@require_GET
def session_tools_view(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id)
    # Listing starts a session's stdio servers as a run would: only for those who can start runs (a viewer
    # opening the panel on many sessions must not start processes the run limits never counted).
    tools = session_tools(session.id, start_servers=selectors.user_can_act(session, request.user))
    return HttpResponse(render_to_string("portal/fragments/tools_list.html", {"tools": tools}))
