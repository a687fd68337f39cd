"""The portal's pages and the htmx commands they post. Commands answer with the fragment(s) to swap; every
other tab hears about the change over its WebSocket (harness/portal/consumers.py)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orchestrator import permissions, selectors, selectors_sharing
from orchestrator.models import Session
from orchestrator.services.approvals import approval_decide
from orchestrator.services.errors import Forbidden, InvalidInput, NotFound, ServiceError
from orchestrator.services.members import session_member_remove, session_member_set
from orchestrator.services.runs import run_start, run_steer, run_stop
from orchestrator.services.sessions import session_create, session_delete, session_update

from . import fragments
from .auth import portal_login_required

HOME_SESSIONS = 20  # the home page's list: the newest; the sidebar has them all

# Stop answers that mean "the run is (being) stopped", as opposed to a stop that failed.
STOP_SETTLED = {None, "already_stopping", "already_stopped", "no_record"}


def _session_or_404(request: HttpRequest, session_id, need: permissions.Need = "view") -> Session:
    """The session if the user may `need` it (`orchestrator/permissions.py`): 404 if they cannot see it, 403
    (PermissionDenied) if their role is too low."""
    try:
        return permissions.session_for(user=request.user, session_id=session_id, need=need)
    except NotFound:
        raise Http404("no such session") from None
    except Forbidden as error:
        raise PermissionDenied(error.detail) from None


@portal_login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The newest sessions (HOME_SESSIONS of them: the sidebar pages and searches through them all)."""
    page = selectors_sharing.session_list(user=request.user, limit=HOME_SESSIONS)
    return render(request, "portal/home.html", {"sessions": page.sessions, "more": page.next_cursor is not None})


@portal_login_required
@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    try:
        session = session_create(owner=request.user, title=request.POST.get("title") or None)
    except ServiceError as error:
        messages.error(request, error.detail)
        return redirect("home")
    return redirect("session", session_id=session.id)


def _then_home(request: HttpRequest, service, **kwargs) -> HttpResponse:
    """Run a session service for a plain form post, flash its refusal if any, and go back to the list."""
    try:
        service(user=request.user, **kwargs)
    except NotFound:
        raise Http404("no such session") from None
    except Forbidden as error:
        raise PermissionDenied(error.detail) from None
    except ServiceError as error:
        messages.error(request, error.detail)
    return redirect("home")


@portal_login_required
@require_POST
def session_rename_view(request: HttpRequest, session_id) -> HttpResponse:
    return _then_home(request, session_update, session_id=session_id, title=request.POST.get("title", ""))


@portal_login_required
@require_POST
def session_model(request: HttpRequest, session_id) -> HttpResponse:
    """Choose the session's model (htmx: answers with the picker, showing a refusal in place)."""
    session = _session_or_404(request, session_id, "own")
    try:
        session = session_update(session_id=session.id, user=request.user, model=request.POST.get("model", ""))
    except ServiceError as error:
        return HttpResponse(fragments.model_picker_html(session.id, session.model, error=error.detail))
    return HttpResponse(fragments.model_picker_html(session.id, session.model))


@portal_login_required
@require_POST
def session_delete_view(request: HttpRequest, session_id) -> HttpResponse:
    return _then_home(request, session_delete, session_id=session_id)


@portal_login_required
@require_GET
def session_page(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id)
    run = selectors.latest_run(session.id)
    context = {
        "session": session,
        "is_owner": session.owner_id == request.user.pk,
        "shared": selectors_sharing.session_is_shared(session),
        "fragments": {
            "model_picker": fragments.model_picker_html(session.id, session.model),
            "composer": fragments.composer_html(session, run,
                                                watching=not selectors.user_can_act(session, request.user)),
            "run_status": fragments.run_status_html(session, run),
            "transcript": fragments.transcript_html(session),
            "approvals": fragments.approvals_html(session),
            "steering": fragments.steering_html(session, run),
        },
    }
    return render(request, "portal/session.html", context)


@portal_login_required
@require_http_methods(["GET", "POST"])
def share(request: HttpRequest, session_id) -> HttpResponse:
    """The Share dialog (the owner's: 403 for a member, 404 for anyone else). GET: its body; POST `kind` (user |
    group), `name`, `role`: share, or change a role. A refusal (an unknown user or group …) is shown inline."""
    session = _session_or_404(request, session_id, "own")
    if request.method == "GET":
        return HttpResponse(fragments.share_html(session))
    form = {key: request.POST.get(key, "").strip() for key in ("kind", "name", "role")}
    try:
        session_member_set(session_id=session.id, user=request.user, **form)
    except ServiceError as error:
        return HttpResponse(fragments.share_html(session, error=error.detail, form=form))
    return HttpResponse(fragments.share_html(session))


@portal_login_required
@require_POST
def share_remove(request: HttpRequest, session_id) -> HttpResponse:
    """Stop sharing with the user or group `name` (`kind`); their open pages close at once."""
    session = _session_or_404(request, session_id, "own")
    try:
        session_member_remove(session_id=session.id, user=request.user, kind=request.POST.get("kind", ""),
                              name=request.POST.get("name", "").strip())
    except ServiceError as error:
        return HttpResponse(fragments.share_html(session, error=error.detail))
    return HttpResponse(fragments.share_html(session))


@portal_login_required
@require_GET
def session_messages(request: HttpRequest, session_id) -> HttpResponse:
    """The page of messages before `?before=<message id>` (htmx: it replaces the "load older" sentinel)."""
    session = _session_or_404(request, session_id)
    before = request.GET.get("before", "")
    if not (before.isascii() and before.isdigit() and len(before) <= 18):  # a 64-bit id, never an overflow
        return HttpResponse("before: a message id is required", status=400, content_type="text/plain")
    return HttpResponse(fragments.older_messages_html(session, before=int(before)))


@portal_login_required
@require_POST
def send(request: HttpRequest, session_id) -> HttpResponse:
    """Send the composer's text; with `replace_from_message` (the composer is editing the last message) the new
    run replaces that message and what followed it."""
    session = _session_or_404(request, session_id, "act")
    replace = _message_id(request.POST.get("replace_from_message", ""))
    try:
        run = run_start(session_id=session.id, user=request.user, text=request.POST.get("text", ""),
                        replace_from_message=replace)
    except ServiceError as error:
        return HttpResponse(fragments.composer_html(session, selectors.latest_run(session.id), error=error.detail))
    return HttpResponse(fragments.composer_html(session, run, clear_draft=True))


def _message_id(value: str) -> int | str | None:
    """A posted message id: "" is none, digits an id; anything else is passed on for the service to refuse."""
    return int(value) if value.isascii() and value.isdigit() else (value or None)


@portal_login_required
@require_POST
def regenerate(request: HttpRequest, session_id) -> HttpResponse:
    """Regenerate the latest answer (`message_id`): a new run from the latest user message, which it replaces
    with the same text. A click on an answer that is no longer the latest changes nothing."""
    session = _session_or_404(request, session_id, "act")
    question = selectors.latest_user_message(session)
    answer = _message_id(request.POST.get("message_id", ""))
    try:
        if question is None or not isinstance(answer, int) or answer < question.id:
            raise InvalidInput("not_latest_answer", "That is no longer the latest answer: nothing was regenerated.")
        run = run_start(session_id=session.id, user=request.user, text=None, replace_from_message=question.id)
    except ServiceError as error:
        return HttpResponse(fragments.composer_html(session, selectors.latest_run(session.id), error=error.detail))
    return HttpResponse(fragments.composer_html(session, run))


@portal_login_required
@require_POST
def stop(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id, "act")
    result = run_stop(session_id=session.id, requested_by=request.user, run_id=request.POST.get("run_id") or None)
    error = "" if result.reason in STOP_SETTLED else "The stop could not be recorded — try again."
    return HttpResponse(fragments.composer_html(session, selectors.latest_run(session.id), error=error))


@portal_login_required
@require_POST
def steer(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id, "act")
    run = selectors.latest_run(session.id)
    try:
        run_steer(session_id=session.id, user=request.user, text=request.POST.get("text", ""))
    except ServiceError as error:
        return HttpResponse(fragments.steering_html(session, run, error=error.detail))
    return HttpResponse(fragments.steering_html(session, run))


@portal_login_required
@require_POST
def decide(request: HttpRequest, approval_id) -> HttpResponse:
    try:
        approval_decide(approval_id=approval_id, user=request.user, decision=request.POST.get("decision"))
    except NotFound:
        raise Http404("no such approval") from None
    except Forbidden as error:
        raise PermissionDenied(error.detail) from None
    except InvalidInput as error:
        return HttpResponse(error.detail, status=400)
    approval_session = selectors.session_for_approval(approval_id=approval_id, user=request.user)
    return HttpResponse(fragments.approvals_html(approval_session))


@portal_login_required
@require_GET
def receipt(request: HttpRequest, run_id) -> HttpResponse:
    run = selectors.run_for_user(run_id=run_id, user=request.user)
    if run is None:
        raise Http404("no such run")
    return HttpResponse(fragments.receipt_html(run))
