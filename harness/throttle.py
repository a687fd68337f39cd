"""Throttling failed logins and failed bearer tokens, with django-axes.

Axes counts failures (in the database, so every process shares them) per client address, and per account at
an address: an address that failed `AXES_FAILURE_LIMIT` times is refused for `AXES_COOLOFF_TIME`, and so is
one account at one address. Failures elsewhere never lock a user out of their own address. The login page
answers a lockout with a plain message (429); the API with `429 {"error": "rate_limited"}` and `Retry-After`.

Bearer tokens are not passwords Django authenticates, so the API reports a bad token to Axes itself
(`user_login_failed`, the signal Axes listens to) and, once the address is over the limit, answers bad
tokens with 429 instead of 401. A valid token is not looked up in Axes at all: the throttle costs nothing
on the requests that matter (a stop), and a token (256 random bits) is not something to guess.
"""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from harness.api.responses import error_response

# Failed tokens are counted under this "account": per address, not per user (the token named none).
TOKEN_CREDENTIALS = {"username": "(bearer token)"}


def retry_after_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def rate_limited_response() -> HttpResponse:
    response = error_response(429, "rate_limited",
                              f"too many failed attempts from this address: retry in {retry_after_seconds()} s")
    response["Retry-After"] = str(retry_after_seconds())
    return response


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict | None = None) -> HttpResponse:
    """Axes' answer to a locked-out login (AXES_LOCKOUT_CALLABLE)."""
    if request.path.startswith("/api/"):
        return rate_limited_response()
    minutes = max(1, retry_after_seconds() // 60)
    page = render_to_string("portal/locked_out.html", {"minutes": minutes}, request=request)
    return HttpResponse(page, status=429, headers={"Retry-After": str(retry_after_seconds())})


def token_failed(request: HttpRequest) -> bool:
    """Count a bad token from this address; True once the address is over the limit (answer 429)."""
    user_login_failed.send(sender=__name__, credentials=TOKEN_CREDENTIALS, request=request)
    return AxesProxyHandler.is_locked(request, TOKEN_CREDENTIALS)
