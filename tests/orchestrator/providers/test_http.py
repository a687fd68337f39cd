"""What the HTTP providers share (orchestrator/providers/http.py), called directly: the server's requested
wait in every form it may take (as SDK response headers and as a plain mapping), the per-phase HTTP
timeouts, and a server's message cut to one short line for the transcript."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx2

from orchestrator.providers.base import ModelTimeouts
from orchestrator.providers.http import (
    MAX_SERVER_MESSAGE,
    POOL_TIMEOUT_SECONDS,
    WRITE_TIMEOUT_SECONDS,
    clip,
    http_timeout,
    retry_after_seconds,
)


def test_retry_after_forms():
    assert retry_after_seconds(httpx2.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_seconds(httpx2.Headers({"retry-after": "3.5"})) == 3.5
    assert retry_after_seconds(httpx2.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_seconds(httpx2.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx2.Headers({})) is None


def test_retry_after_in_seconds_milliseconds_or_as_a_date():
    assert retry_after_seconds({"retry-after": "12"}) == 12.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "12"}) == 1.5
    assert 25 < retry_after_seconds({"retry-after": formatdate(time.time() + 30, usegmt=True)}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_a_negative_wait_is_no_wait():
    assert retry_after_seconds({"retry-after-ms": "-500"}) == 0.0
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0


def test_the_idle_timeout_bounds_each_read_and_there_is_no_total():
    timeout = http_timeout(ModelTimeouts(connect=2, idle=5))
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (
        2, 5, WRITE_TIMEOUT_SECONDS, POOL_TIMEOUT_SECONDS,
    )


def test_a_servers_message_is_one_line_cut_at_the_limit():
    assert clip("  Bad\n gateway\t(nginx) ") == "Bad gateway (nginx)"
    page = "x" * (MAX_SERVER_MESSAGE + 50)
    assert clip(page) == "x" * (MAX_SERVER_MESSAGE - 1) + "…"
    assert clip("y" * MAX_SERVER_MESSAGE) == "y" * MAX_SERVER_MESSAGE  # at the limit: kept whole
    assert clip("a long message", limit=6) == "a lon…"
