"""Which provider drives runs, from settings.HARNESS_MODEL."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import Provider
from .scripted import ScriptedProvider


@cache
def provider_for(model: str) -> Provider:
    kind = model.split(":", 1)[0]
    if kind == "scripted":
        return ScriptedProvider()
    raise ImproperlyConfigured(f"HARNESS_MODEL {model!r} is not a known model (available: scripted)")


def get_provider() -> Provider:
    return provider_for(settings.HARNESS_MODEL)
