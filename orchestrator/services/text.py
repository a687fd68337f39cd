"""The one check every text a user gives us passes (a message, a steering message, a title)."""

from __future__ import annotations

from .errors import InvalidInput


def checked_text(value, *, name: str, code: str) -> str:
    """`value` if it is a string we can store and show: valid Unicode (no lone surrogate), no NUL."""
    if not isinstance(value, str):
        raise InvalidInput(code, f"{name} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(code, f"{name} contains invalid Unicode (a lone surrogate)") from None
    if "\x00" in value:
        raise InvalidInput(code, f"{name} must not contain NUL characters")
    return value
