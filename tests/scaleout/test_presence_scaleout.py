"""Presence across web processes (Redis channel layer): pages of one session open on two Daphne processes each
show everyone who is here, a user's second tab on the other process counts once, and a page that closes leaves
everyone else's "Here now" at once."""

from __future__ import annotations

import time

import pytest
from websockets.sync.client import connect as ws_connect

from devtools.process import login_cookie, manage
from tests.helpers import here_now

pytestmark = pytest.mark.timeout(300)


def page(cluster, web: str, session_id: str, cookie: str):
    return ws_connect(cluster.portal_ws_url(web, session_id),
                      additional_headers={"Cookie": f"sessionid={cookie}", "Origin": cluster.url(web, "")})


def until_here(socket, users: list[str], timeout: float = 5.0) -> None:
    """Receive the page's frames until its presence lists exactly `users`."""
    deadline = time.monotonic() + timeout
    while here_now(socket.recv(timeout=max(0.001, deadline - time.monotonic()))) != sorted(users):
        pass


def test_who_is_here_is_the_same_on_every_web_process(cluster):
    session_id = cluster.new_session("a")
    manage(cluster.env, "create_api_token", "nina", timeout=60)  # (the user)
    assert cluster.call("a", "PUT", f"/api/sessions/{session_id}/members/users/nina", {"role": "viewer"})[0] == 200
    owner, member = login_cookie(cluster.env, "scale"), login_cookie(cluster.env, "nina")
    with page(cluster, "a", session_id, owner) as on_a:
        assert here_now(on_a.recv(timeout=10)) == ["scale"]  # the snapshot's
        with page(cluster, "b", session_id, member) as on_b:
            until_here(on_b, ["nina", "scale"])  # scale's page, on the other process, answered
            until_here(on_a, ["nina", "scale"])
            with page(cluster, "b", session_id, owner) as second_tab:  # scale again, on the other process
                until_here(second_tab, ["nina", "scale"])  # both processes' pages answered it
        until_here(on_a, ["scale"])  # nina's page closed on b: scale's page on a sees it go
