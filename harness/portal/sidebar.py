"""The portal's session sidebar, on every page: "My sessions" and "Shared with me", newest activity first, each
with its live run's badge (running, needs approval, stopping); search as you type, more on scroll, the
archived ones instead, and the owner's rename / archive / delete.

Everything is read through `orchestrator.selectors_sharing` (so through the one permission rule, paged by its
cursor) and written through the session services. Badges stay live over the page's socket: it joins the
user's group (`events.user_group`), where a session's owner and members hear that its listing changed
(`sessions.activity`, `events.with_activity`); the socket answers with the item's badge and title, read
afresh for its user.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from orchestrator import events, selectors_sharing
from orchestrator.services.errors import Forbidden, InvalidInput, NotFound, ServiceError
from orchestrator.services.sessions import session_delete, session_update

from harness.groups import SessionGroupMember

from .auth import portal_login_required

PAGE = 30  # sessions per page of each list
SCOPES = {"mine": "My sessions", "shared": "Shared with me"}
BADGES = {"running": "Running", "approval": "Needs approval", "stopping": "Stopping"}


def _badge(listing: dict) -> str:
    run = listing["active_run"]
    return events.run_badge(run["state"], run["stop_requested"]) if run else ""


def _item(listing: dict, *, current: str = "", error: str = "") -> dict:
    badge = _badge(listing)
    return {"s": listing, "badge": badge, "badge_words": BADGES.get(badge, ""), "current": current == listing["id"],
            "error": error}


def _page(user, *, scope: str, q: str, archived: bool, cursor: str | None, current: str) -> dict:
    page = selectors_sharing.session_list(user=user, q=q, scope=scope, archived=archived, limit=PAGE,
                                          cursor=cursor)
    return {"items": [_item(s, current=current) for s in page.sessions], "next_cursor": page.next_cursor,
            "scope": scope, "q": q, "archived": archived, "current": current, "first": cursor is None}


def results_html(user, *, q: str = "", archived: bool = False, current: str = "") -> str:
    """Both lists' first pages (a bad `q` is the selectors' InvalidInput)."""
    sections = [{"scope": scope, "title": title,
                 **_page(user, scope=scope, q=q, archived=archived, cursor=None, current=current)}
                for scope, title in SCOPES.items()]
    return render_to_string("portal/sidebar/results.html", {"sections": sections, "q": q, "archived": archived})


def sidebar_context(*, current: str = "", socket: bool = True) -> dict:
    """The sidebar's frame, for the page's first render (`templatetags/sidebar.py`); its lists are fetched
    (`GET /sidebar/`) once the page is shown. `socket`: the sidebar opens its own (pages without one)."""
    return {"current": current, "socket": socket}


def item_html(listing: dict, *, current: str = "", error: str = "") -> str:
    return render_to_string("portal/sidebar/item.html", _item(listing, current=current, error=error))


def activity_html(user, session_id: str) -> str:
    """What a `sessions.activity` changes in a page: the session's badge and title, out of band, or its item
    taken out if the user no longer sees it. Only ids the page has are swapped."""
    listing = selectors_sharing.session_listing_for(user=user, session_id=session_id)
    if listing is None:
        return f'<li id="sb-{session_id}" hx-swap-oob="delete"></li>'
    return render_to_string("portal/sidebar/activity.html", _item(listing))


# --- views ------------------------------------------------------------------------------------------------
def _refused(error: ServiceError) -> Exception:
    """The portal's answers to the permission rule: 404 without a role, 403 with one too low."""
    if isinstance(error, NotFound):
        return Http404("no such session")
    return PermissionDenied(error.detail)


def _bad_request(error: InvalidInput) -> HttpResponse:
    return HttpResponse(error.detail, status=400, content_type="text/plain")


@portal_login_required
@require_GET
def sidebar(request: HttpRequest) -> HttpResponse:
    """Both lists for a search (`q`) and a view (`archived=1`: the archived sessions)."""
    try:
        html = results_html(request.user, q=request.GET.get("q", "").strip(),
                            archived=request.GET.get("archived") == "1", current=request.GET.get("current", ""))
    except InvalidInput as error:
        return _bad_request(error)
    return HttpResponse(html)


@portal_login_required
@require_GET
def sidebar_more(request: HttpRequest) -> HttpResponse:
    """The page of list `scope` after `cursor` (htmx: it replaces the "more" sentinel that asked for it)."""
    scope, cursor = request.GET.get("scope", ""), request.GET.get("cursor", "")
    if scope not in SCOPES or not cursor:
        return HttpResponse("scope (mine or shared) and cursor are required", status=400, content_type="text/plain")
    try:
        context = _page(request.user, scope=scope, q=request.GET.get("q", "").strip(),
                        archived=request.GET.get("archived") == "1", cursor=cursor,
                        current=request.GET.get("current", ""))
    except InvalidInput as error:
        return _bad_request(error)
    return HttpResponse(render_to_string("portal/sidebar/page.html", context))


@portal_login_required
@require_GET
def sidebar_item(request: HttpRequest, session_id) -> HttpResponse:
    """A session the page does not list (new, newly shared, or on a page not loaded yet), put first in its list
    out of band if it belongs to the page's view (`archived`; none while searching); otherwise nothing."""
    listing = selectors_sharing.session_listing_for(user=request.user, session_id=session_id)
    if listing is None:
        raise Http404("no such session")  # the rule's answer without a role (gone, or never theirs)
    archived = request.GET.get("archived") == "1"
    if request.GET.get("q", "").strip() or listing["archived"] != archived:
        return HttpResponse("")
    scope = "mine" if listing["role"] == "owner" else "shared"
    item = item_html(listing, current=request.GET.get("current", ""))
    return HttpResponse(f'<div hx-swap-oob="afterbegin:#sidebar-{scope}">{item}</div>')


def _owner_act(request: HttpRequest, session_id, service, **changes) -> HttpResponse:
    """Run an owner's act on the session; answer with its item (with the refusal, if the service refused) or,
    once it leaves this view (archived, unarchived, deleted), with nothing: htmx swaps the item out."""
    current = request.POST.get("current", "")
    try:
        service(session_id=session_id, user=request.user, **changes)
    except (NotFound, Forbidden) as error:
        raise _refused(error) from None
    except ServiceError as error:  # (refused before the permission check, e.g. an empty title)
        listing = selectors_sharing.session_listing_for(user=request.user, session_id=session_id)
        if listing is None:
            raise Http404("no such session") from None
        return HttpResponse(item_html(listing, current=current, error=error.detail))
    if service is session_delete and current == str(session_id):
        return HttpResponse("", headers={"HX-Redirect": reverse("home")})  # its page is gone: home
    if service is session_delete or "archived" in changes:
        return HttpResponse("")
    listing = selectors_sharing.session_listing_for(user=request.user, session_id=session_id)
    return HttpResponse(item_html(listing, current=current) if listing else "")


@portal_login_required
@require_POST
def sidebar_rename(request: HttpRequest, session_id) -> HttpResponse:
    return _owner_act(request, session_id, session_update, title=request.POST.get("title", ""))


@portal_login_required
@require_POST
def sidebar_archive(request: HttpRequest, session_id) -> HttpResponse:
    """`archived=1` archives, `archived=0` unarchives."""
    return _owner_act(request, session_id, session_update, archived=request.POST.get("archived") == "1")


@portal_login_required
@require_POST
def sidebar_delete(request: HttpRequest, session_id) -> HttpResponse:
    return _owner_act(request, session_id, session_delete)


# --- the socket -----------------------------------------------------------------------------------------------
# An announcement reaches every socket of each user it names (a tab per open page): the first of a user's
# sockets in this process to handle it renders the fragment, the others await that same render. Without this, N
# tabs of one user each hearing N runs start cost N² renders on the one request thread (bench/stream_fanout.py,
# 200 tabs: the web's database thread saturated and every stream slowed to a fifth of its pace).
_RENDERS: OrderedDict[tuple[int, str], tuple[float, asyncio.Future]] = OrderedDict()
RENDER_SHARED_SECONDS = 30.0  # how long a render is kept for late sockets (a backlog) before it is dropped


def _shared_render(user, message: dict) -> asyncio.Future:
    now = time.monotonic()
    while _RENDERS and next(iter(_RENDERS.values()))[0] < now - RENDER_SHARED_SECONDS:
        _RENDERS.popitem(last=False)
    key = (user.pk, message.get("id") or uuid.uuid4().hex)  # (an announcement without an id: its own render)
    shared = _RENDERS.get(key)
    if shared is None or shared[1].get_loop() is not asyncio.get_running_loop():
        render = asyncio.ensure_future(database_sync_to_async(activity_html)(user, message["session_id"]))
        shared = _RENDERS[key] = (now, render)
    return shared[1]


class SidebarListener:
    """Mixed into a portal consumer that joined `events.user_group(user)` (`join_group(also=…)`)."""

    async def sessions_activity(self, message: dict) -> None:
        html = await asyncio.shield(_shared_render(self.scope["user"], message))
        try:
            await self.send(text_data=html)
        except Exception:  # noqa: BLE001 - a closed socket; its disconnect cleans up
            return


class SidebarConsumer(SidebarListener, SessionGroupMember, AsyncWebsocketConsumer):
    """The sidebar's socket on pages without a session socket (the home page): badges only."""

    metrics_kind = "portal"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()  # before the close, so the client sees its code
            await self.close(code=4401)
            return
        # Joined before the handshake completes: once the page sees the socket open, it hears every change.
        await self.join_group(events.user_group(user.pk), session_id=None, user=user)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.leave_group()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Nothing is sent to it."""
