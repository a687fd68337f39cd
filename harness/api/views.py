"""The JSON HTTP API (documented in docs/api.md). Views translate and delegate to services/selectors."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from orchestrator import selectors
from orchestrator.services.approvals import decide_approval
from orchestrator.services.runs import start_run, steer_run, stop_run
from orchestrator.services.sessions import session_create, session_delete, session_rename

from .auth import api_view
from .responses import ApiError, error_response, field, json_body


@api_view("GET", "POST")
def sessions(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return JsonResponse({"sessions": selectors.sessions_for_user(user=request.user)})
    data = json_body(request, required=False)
    session = session_create(owner=request.user, title=field(data, "title", str, required=False))
    return JsonResponse(selectors.session_snapshot(session), status=201)


@api_view("GET", "PATCH", "DELETE")
def session(request: HttpRequest, session_id: str) -> JsonResponse:
    if request.method == "PATCH":
        session_rename(session_id=session_id, user=request.user, title=field(json_body(request), "title", str))
    elif request.method == "DELETE":
        session_delete(session_id=session_id, user=request.user)
        return JsonResponse({"deleted": True})
    found = selectors.session_for_user(session_id=session_id, user=request.user)
    if found is None:
        raise ApiError(404, "not_found", "no such session")
    return JsonResponse(selectors.session_snapshot(found))


@api_view("POST")
def runs(request: HttpRequest, session_id: str) -> JsonResponse:
    text = field(json_body(request), "text", str)
    run = start_run(session_id=session_id, user=request.user, text=text)
    return JsonResponse({"run_id": str(run.id), "state": run.state}, status=201)


@api_view("POST")
def stop(request: HttpRequest, session_id: str) -> JsonResponse:
    run_id = field(json_body(request, required=False), "run_id", str, required=False)
    result = stop_run(session_id=session_id, requested_by=request.user, run_id=run_id)
    return JsonResponse(result.as_dict())


@api_view("POST")
def steer(request: HttpRequest, session_id: str) -> JsonResponse:
    steering = steer_run(session_id=session_id, user=request.user, text=field(json_body(request), "text", str))
    return JsonResponse(selectors.steering_data(steering), status=202)


@api_view("GET")
def run(request: HttpRequest, run_id: str) -> JsonResponse:
    found = selectors.run_for_user(run_id=run_id, user=request.user)
    if found is None:
        raise ApiError(404, "not_found", "no such run")
    return JsonResponse(selectors.run_detail(found))


@api_view("POST")
def approval(request: HttpRequest, approval_id: str) -> JsonResponse:
    decision = field(json_body(request), "decision", str)
    if decision not in ("approve", "deny"):
        raise ApiError(400, "invalid_field", "'decision' must be 'approve' or 'deny'")
    result = decide_approval(approval_id=approval_id, user=request.user, decision=decision)
    return JsonResponse(result.as_dict())


def not_found(request: HttpRequest, exception=None) -> JsonResponse:
    return error_response(404, "not_found", f"no API endpoint at {request.path}")
