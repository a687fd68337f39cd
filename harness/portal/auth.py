"""The portal's login rule, htmx-aware.

A page request without a login is redirected to the login page, as Django's `login_required` does. An htmx
request is different: htmx follows the redirect inside its XMLHttpRequest and would swap the login page
into the fragment it targets (a login form inside the composer, and a stop that silently did nothing). It
gets `401 {"error": "unauthenticated", "detail": …}` instead; htmx swaps nothing for an error status, and the
page's script (static/js/session.js) says where the user acted that the login has expired.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse

LOGIN_EXPIRED = "your login has expired: log in again"


def portal_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            return JsonResponse({"error": "unauthenticated", "detail": LOGIN_EXPIRED}, status=401)
        return redirect_to_login(request.get_full_path())

    return wrapped
