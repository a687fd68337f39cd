"""Provider instances for model ids (see catalog.py for the ids and the configuration they read)."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import ModelTimeouts, Provider
from .catalog import ModelConfigError, ModelSpec, api_key_for, available_models, base_url_for, check_model
from .scripted import ScriptedProvider


def provider_for(model_id: str) -> Provider:
    """The provider for a model id; ImproperlyConfigured (in plain words) when it cannot be used."""
    try:
        spec = check_model(model_id)
    except ModelConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    # Keyed on everything the instance is built from, so tests (and a changed setting) get a fresh one;
    # the same id shares one SDK client and its connection pool.
    return _build(spec, api_key_for(spec) or "", base_url_for(spec), _timeouts(), settings.HARNESS_MODEL_MAX_TOKENS)


def _timeouts() -> ModelTimeouts:
    return ModelTimeouts(
        connect=settings.HARNESS_MODEL_CONNECT_TIMEOUT_SECONDS, idle=settings.HARNESS_MODEL_IDLE_TIMEOUT_SECONDS
    )


def load_sdks() -> None:
    """Import the SDK of every configured model's provider now instead of on its first call: a process that
    drives runs calls this before it freezes its start-up heap (harness/process.py), so the SDK's modules
    (~600 for OpenAI's, ~50k objects) are frozen with the rest instead of being rescanned by every full
    collection of the garbage collector (a 30–40 ms pause each, measured on `serve`)."""
    kinds = set()
    for model_id in available_models():
        try:
            kinds.add(check_model(model_id).kind)
        except ModelConfigError:
            continue  # reported by `manage.py check`; a run on it fails saying why
    if "openai" in kinds:
        from . import openai_chat  # noqa: F401
    if "anthropic" in kinds:
        from . import anthropic_messages  # noqa: F401


@cache
def _build(spec: ModelSpec, api_key: str, base_url: str | None, timeouts: ModelTimeouts, max_tokens: int) -> Provider:
    if spec.kind == "openai":
        from .openai_chat import OpenAIChatProvider  # the SDKs load only when a deployment uses them

        return OpenAIChatProvider(model=spec.model, api_key=api_key, base_url=base_url, timeouts=timeouts)
    if spec.kind == "anthropic":
        from .anthropic_messages import AnthropicProvider

        return AnthropicProvider(
            model=spec.model, api_key=api_key, base_url=base_url, timeouts=timeouts, max_tokens=max_tokens
        )
    return ScriptedProvider()
