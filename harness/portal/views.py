"""The portal's pages. (The live, htmx-over-WebSocket session page is the live-portal issue's work; this
is the server-rendered transcript it builds on.)"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from orchestrator import selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html", {"sessions": selectors.sessions_for_user(user=request.user)})


@login_required
def session_page(request: HttpRequest, session_id) -> HttpResponse:
    session = selectors.session_for_user(session_id=session_id, user=request.user)
    if session is None:
        raise Http404("no such session")
    return render(request, "portal/session.html", {"snapshot": selectors.session_snapshot(session)})
