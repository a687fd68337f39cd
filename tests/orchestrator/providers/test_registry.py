"""The provider registry (orchestrator/providers/registry.py): the provider a model id gets, the plain-words
refusal of an id that cannot be used, and one shared instance per id and configuration."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator.providers.openai_chat import OpenAIChatProvider
from orchestrator.providers.registry import provider_for
from orchestrator.providers.scripted import ScriptedProvider

OPENAI_MODEL = "openai:gpt-4.1-mini@http://127.0.0.1:9/v1"


def test_provider_for_builds_the_provider_and_refuses_unusable_ids(settings):
    assert isinstance(provider_for("scripted"), ScriptedProvider)
    settings.ANTHROPIC_API_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="ANTHROPIC_API_KEY"):
        provider_for("anthropic:claude-sonnet-4-6")


def test_provider_for_scripted():
    assert isinstance(provider_for("scripted"), ScriptedProvider)
    assert isinstance(provider_for("scripted:anything"), ScriptedProvider)
    assert provider_for("scripted").name == "scripted"


def test_unknown_model_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match="is not a known model"):
        provider_for("gpt-nothing")


def test_one_instance_per_id_and_a_fresh_one_when_its_configuration_changes(settings):
    settings.OPENAI_API_KEY = "key-one"
    first = provider_for(OPENAI_MODEL)
    assert isinstance(first, OpenAIChatProvider)
    assert provider_for(OPENAI_MODEL) is first  # the same SDK client and connection pool
    settings.OPENAI_API_KEY = "key-two"
    assert provider_for(OPENAI_MODEL) is not first
