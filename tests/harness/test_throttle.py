"""harness/throttle.py: failed logins and failed bearer tokens are throttled per client address (and per
account at an address) by django-axes: a plain 429 page on the login form, `429 rate_limited` with
Retry-After on the API. Other addresses are not affected."""

from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.services.tokens import api_token_create

pytestmark = pytest.mark.django_db

HERE, ELSEWHERE = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "198.51.100.9"}


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.AXES_FAILURE_LIMIT = 3


def log_in(password: str, address: dict):
    return Client().post("/login/", {"username": "alice", "password": password}, **address)


def test_failed_logins_lock_the_address_not_the_account(user):
    assert log_in("alice-password-1", HERE).status_code == 302  # it works …
    for _ in range(2):
        assert log_in("wrong", HERE).status_code == 200  # the form again, with its error
    assert log_in("wrong", HERE).status_code == 429  # the third failure locks the address
    locked = log_in("alice-password-1", HERE)  # … then even the right password waits
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert b"Too many failed attempts" in locked.content and b"Try again in 5 minutes" in locked.content
    assert log_in("alice-password-1", ELSEWHERE).status_code == 302  # the owner, from their own address


def test_bad_bearer_tokens_are_throttled_per_address(user):
    token = api_token_create(user=user)

    def get(bearer: str, address: dict):
        return Client().get("/api/sessions", HTTP_AUTHORIZATION=f"Bearer {bearer}", **address)

    assert get(token, HERE).status_code == 200
    for _ in range(2):
        assert get("hk_guess", HERE).status_code == 401
    assert get("hk_guess", HERE).status_code == 429  # the third failure locks the address
    refused = get("hk_another_guess", HERE)
    assert refused.status_code == 429 and refused["Retry-After"] == "300"
    assert refused.json()["error"] == "rate_limited"
    assert get("hk_guess", ELSEWHERE).status_code == 401  # another address: counted on its own
    assert get(token, HERE).status_code == 200  # a valid token is never held up (it is not a guess)


@pytest.mark.django_db(transaction=True)
async def test_bad_tokens_on_the_socket_count_too(session, token):
    from channels.testing import WebsocketCommunicator

    from harness.asgi import application
    from tests.harness.ws_api.test_consumer import api_path, assert_closed_with, bearer

    def socket(bearer_token: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, api_path(session.id), headers=bearer(bearer_token))
        communicator.scope["client"] = ("203.0.113.7", 50000)
        return communicator

    for _ in range(2):
        await assert_closed_with(socket("hk_guess"), 4401)
    await assert_closed_with(socket("hk_guess"), 4429)  # the third bad token from this address
    good = socket(token)  # a valid token is never held up
    connected, _ = await good.connect()
    assert connected and (await good.receive_json_from(timeout=5))["type"] == "session.snapshot"
    await good.disconnect()
