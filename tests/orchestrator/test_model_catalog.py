"""Model ids, the configured list, and the plain-words refusals at start-up and when a run starts."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import transaction

from orchestrator.models import Run, RunOutcome
from orchestrator.providers.catalog import (
    ModelConfigError,
    available_models,
    check_model,
    model_choices,
    parse_model_id,
    resolve_model,
)
from orchestrator.providers.registry import provider_for
from orchestrator.providers.scripted import ScriptedProvider
from orchestrator.services.errors import Conflict, InvalidInput
from orchestrator.services.runs import run_start
from orchestrator.services.sessions import session_create, session_update

from ..helpers import wait_terminal


@pytest.mark.parametrize(
    ("model_id", "kind", "model", "base_url"),
    [
        ("scripted", "scripted", "", None),
        ("openai:gpt-4.1-mini", "openai", "gpt-4.1-mini", None),
        ("openai:llama3@http://127.0.0.1:11434/v1", "openai", "llama3", "http://127.0.0.1:11434/v1"),
        # Ollama tags contain ":"; only "@" separates the model from the server.
        ("openai:llama3:8b@http://127.0.0.1:11434/v1", "openai", "llama3:8b", "http://127.0.0.1:11434/v1"),
        ("anthropic:claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6", None),
        (" anthropic:claude-x@https://proxy.example/anthropic ", "anthropic", "claude-x", "https://proxy.example/anthropic"),
    ],
)
def test_parse_model_id(model_id, kind, model, base_url):
    spec = parse_model_id(model_id)
    assert (spec.kind, spec.model, spec.base_url) == (kind, model, base_url)
    assert spec.id == model_id.strip()


@pytest.mark.parametrize(
    ("model_id", "says"),
    [
        ("", "non-empty"),
        ("gpt-4", "not a known model kind"),
        ("openai:", "names no model"),
        ("openai:@http://x", "names no model"),
        ("openai:m@ftp://host/v1", r"is not an http\(s\) URL"),
        ("anthropic:m@nowhere", r"is not an http\(s\) URL"),
    ],
)
def test_bad_model_ids_are_refused_in_plain_words(model_id, says):
    with pytest.raises(ModelConfigError, match=says):
        parse_model_id(model_id)


def test_keys_are_required_where_the_service_needs_them(settings):
    settings.OPENAI_API_KEY = settings.ANTHROPIC_API_KEY = settings.OPENAI_BASE_URL = ""
    with pytest.raises(ModelConfigError, match="set OPENAI_API_KEY"):
        check_model("openai:gpt-4.1-mini")
    with pytest.raises(ModelConfigError, match="set ANTHROPIC_API_KEY"):
        check_model("anthropic:claude-sonnet-4-6")
    # A local OpenAI-compatible server needs no key (the SDK gets a placeholder).
    assert check_model("openai:llama3@http://127.0.0.1:11434/v1").kind == "openai"
    settings.OPENAI_API_KEY, settings.ANTHROPIC_API_KEY = "sk-test", "sk-ant-test"
    assert check_model("openai:gpt-4.1-mini").model == "gpt-4.1-mini"
    assert check_model("anthropic:claude-sonnet-4-6").model == "claude-sonnet-4-6"


def test_the_default_is_always_offered_first_without_duplicates(settings):
    settings.HARNESS_MODEL = "scripted"
    settings.HARNESS_MODELS = ["openai:a@http://127.0.0.1:1/v1", "scripted", "openai:a@http://127.0.0.1:1/v1"]
    assert available_models() == ["scripted", "openai:a@http://127.0.0.1:1/v1"]
    choices = model_choices()
    assert [c["default"] for c in choices] == [True, False]
    assert all(c["available"] and c["problem"] is None for c in choices)


def test_an_unusable_model_is_listed_as_unavailable_with_the_reason(settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.HARNESS_MODELS = ["anthropic:claude-sonnet-4-6"]
    [_, anthropic] = model_choices()
    assert anthropic["available"] is False and "ANTHROPIC_API_KEY" in anthropic["problem"]


def test_resolve_model_refuses_a_model_not_offered_here(settings):
    settings.HARNESS_MODELS = []
    assert resolve_model("").id == "scripted"
    assert resolve_model(None).id == "scripted"
    with pytest.raises(ModelConfigError, match="is not offered here"):
        resolve_model("openai:gpt-4.1-mini@http://127.0.0.1:9/v1")


def test_the_start_up_system_check_names_every_problem(settings):
    settings.OPENAI_API_KEY = settings.ANTHROPIC_API_KEY = settings.OPENAI_BASE_URL = ""
    settings.HARNESS_MODELS = ["openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-6"]
    with pytest.raises(SystemCheckError, match="harness.E001") as refused:
        call_command("check")  # as `serve` and `runworker` do before they start
    assert "OPENAI_API_KEY" in str(refused.value) and "ANTHROPIC_API_KEY" in str(refused.value)
    settings.HARNESS_MODELS = []
    call_command("check")


def test_provider_for_builds_the_provider_and_refuses_unusable_ids(settings):
    assert isinstance(provider_for("scripted"), ScriptedProvider)
    settings.ANTHROPIC_API_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="ANTHROPIC_API_KEY"):
        provider_for("anthropic:claude-sonnet-4-6")


@pytest.mark.django_db
def test_sessions_choose_among_offered_models_and_runs_record_theirs(settings, user):
    settings.HARNESS_MODELS = ["scripted:alt"]
    session = session_create(owner=user, model="scripted:alt")
    assert session.model == "scripted:alt"
    with pytest.raises(InvalidInput) as refused:
        session_update(session_id=session.id, user=user, model="openai:gpt-x@http://127.0.0.1:9/v1")
    assert refused.value.code == "unknown_model"
    session.refresh_from_db()
    assert session.model == "scripted:alt"  # a refused choice changes nothing
    run = run_start(session_id=session.id, user=user, text="hi")
    assert run.model == "scripted:alt"
    session_update(session_id=session.id, user=user, model="")  # back to the deployment's default
    session.refresh_from_db()
    assert session.model == ""


@pytest.mark.django_db
def test_a_run_cannot_start_on_a_model_no_longer_offered(settings, user):
    settings.HARNESS_MODELS = ["scripted:alt"]
    session = session_create(owner=user, model="scripted:alt")
    settings.HARNESS_MODELS = []  # the deployment dropped it
    with pytest.raises(Conflict) as refused:
        run_start(session_id=session.id, user=user, text="hi")
    assert refused.value.code == "model_unavailable" and "choose another model" in refused.value.detail
    assert not Run.objects.filter(session=session).exists()


@pytest.mark.django_db(transaction=True)
async def test_a_run_whose_model_became_unusable_fails_in_plain_words(settings, session, user, worker):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    settings.HARNESS_MODELS = ["openai:llama3@http://127.0.0.1:9/v1"]
    await session_model(session, user, "openai:llama3@http://127.0.0.1:9/v1")
    # The run is recorded with a model this worker has no key for (configuration changed between the start
    # and the drive): the executor cannot build its provider, and says so instead of crashing.
    run = await start_with_model(session, user, "openai:gpt-4.1-mini")
    finished = await wait_terminal(run.id)
    assert finished.outcome == RunOutcome.FAILED
    assert "the model cannot be used" in finished.error and "OPENAI_API_KEY" in finished.error


async def session_model(session, user, model: str) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(session_update)(session_id=session.id, user=user, model=model)


async def start_with_model(session, user, model: str) -> Run:
    """Start a run recorded with `model` although it cannot be used (as if configuration changed since)."""
    from asgiref.sync import sync_to_async

    def write() -> Run:
        with transaction.atomic():  # the worker's wake-up goes out on commit, after the model is changed
            run = run_start(session_id=session.id, user=user, text="hello")
            Run.objects.filter(pk=run.pk).update(model=model)
        return run

    return await sync_to_async(write)()
