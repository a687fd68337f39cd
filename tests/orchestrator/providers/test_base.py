"""The provider interface's own behaviour (orchestrator/providers/base.py): which errors may be retried, what
an error shows the user, and the token estimate used when a provider reports no usage."""

from __future__ import annotations

import pytest

from orchestrator.providers.base import ErrorKind, ProviderError, estimate_tokens


@pytest.mark.parametrize(("kind", "retryable"), [
    (ErrorKind.RATE_LIMITED, True),
    (ErrorKind.SERVER_ERROR, True),
    (ErrorKind.CONNECT_FAILED, True),
    (ErrorKind.AUTHENTICATION, False),
    (ErrorKind.BAD_REQUEST, False),
    (ErrorKind.MALFORMED_STREAM, False),
    (ErrorKind.IDLE_TIMEOUT, False),
    (ErrorKind.PROVIDER_ERROR, False),
])
def test_only_errors_that_may_pass_are_retryable(kind, retryable):
    assert ProviderError("failed", kind=kind).retryable is retryable


def test_an_error_shows_its_message_alone_and_defaults_to_a_provider_error():
    error = ProviderError("the model server is overloaded (HTTP 529)")
    assert str(error) == "the model server is overloaded (HTTP 529)"
    assert (error.kind, error.retry_after, error.details) == (ErrorKind.PROVIDER_ERROR, None, {})


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_the_token_estimate_is_about_four_characters_a_token(text, tokens):
    assert estimate_tokens(text) == tokens
