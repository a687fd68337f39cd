"""The middleware chain runs in one thread: an API request crosses between the event loop and threads a
handful of times, not once per middleware hook (each crossing waits for a possibly busy event loop)."""

from __future__ import annotations

import pytest
from asgiref import sync
from channels.testing import HttpCommunicator

from harness.asgi import application
from orchestrator.services.tokens import api_token_create
from tests.helpers import db

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_api_request_crosses_between_loop_and_threads_at_most_five_times(user, monkeypatch):
    token = await db(api_token_create, user=user)
    crossings = []
    to_thread, to_loop = sync.SyncToAsync.__call__, sync.AsyncToSync.__call__

    async def counted_to_thread(self, *args, **kwargs):
        crossings.append("thread")
        return await to_thread(self, *args, **kwargs)

    def counted_to_loop(self, *args, **kwargs):
        crossings.append("loop")
        return to_loop(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted_to_thread)
    monkeypatch.setattr(sync.AsyncToSync, "__call__", counted_to_loop)
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"127.0.0.1")]
    response = await HttpCommunicator(application, "GET", "/api/sessions", headers=headers).get_response()
    assert response["status"] == 200
    # With one async-capable middleware hook hopping per call this was 15.
    assert len(crossings) <= 5, crossings
