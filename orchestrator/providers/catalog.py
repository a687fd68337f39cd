"""Which models this deployment offers: model ids, parsed, and checked against the configuration.

A model id names a provider kind, the provider's model and, optionally, the server to talk to:

    scripted                                    the built-in scripted model (embedded default)
    openai:gpt-4.1-mini                         OpenAI (key from OPENAI_API_KEY)
    openai:llama3@http://127.0.0.1:11434/v1     any OpenAI-compatible server (Ollama, vLLM, llama.cpp …)
    anthropic:claude-sonnet-4-6                 Anthropic (key from ANTHROPIC_API_KEY)

HARNESS_MODEL is the default; HARNESS_MODELS the list a session may choose from (the default always
included). Problems are reported in plain words, at start-up (`manage.py check`, `serve`, `runworker`) and
again when a run starts, never as a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

KINDS = ("scripted", "openai", "anthropic")


class ModelConfigError(ValueError):
    """A model id that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class ModelSpec:
    id: str  # the model id as configured, e.g. "openai:llama3@http://127.0.0.1:11434/v1"
    kind: str  # "scripted" | "openai" | "anthropic"
    model: str  # the provider's model name ("" for scripted)
    base_url: str | None = None  # None: the provider's own endpoint (or OPENAI_BASE_URL / ANTHROPIC_BASE_URL)

    @property
    def label(self) -> str:
        if self.kind == "scripted":
            return f"Scripted model ({self.model})" if self.model else "Scripted model (built in)"
        where = f" at {urlsplit(self.base_url).netloc}" if self.base_url else ""
        return f"{self.model} ({self.kind}{where})"


def parse_model_id(model_id: str) -> ModelSpec:
    if not isinstance(model_id, str) or not model_id.strip():
        raise ModelConfigError("a model id must be a non-empty string such as openai:gpt-4.1-mini")
    model_id = model_id.strip()
    kind, _, rest = model_id.partition(":")
    if kind not in KINDS:
        raise ModelConfigError(f"{model_id!r} is not a known model kind (use scripted, openai:… or anthropic:…)")
    if kind == "scripted":
        return ModelSpec(id=model_id, kind=kind, model=rest)
    # Model names may contain ":" (Ollama tags: llama3:8b), URLs always contain it; "@" separates the two.
    model, _, base_url = rest.partition("@")
    if not model:
        raise ModelConfigError(f"{model_id!r} names no model (write {kind}:<model>)")
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelConfigError(f"{model_id!r}: {base_url!r} is not an http(s) URL")
    return ModelSpec(id=model_id, kind=kind, model=model, base_url=base_url or None)


def api_key_for(spec: ModelSpec) -> str | None:
    """The key a model's provider is called with; None when it needs one and none is configured."""
    if spec.kind == "openai":
        if settings.OPENAI_API_KEY:
            return settings.OPENAI_API_KEY
        # Local OpenAI-compatible servers (Ollama, llama.cpp …) ignore the key, but the SDK wants one.
        return "not-needed" if spec.base_url or settings.OPENAI_BASE_URL else None
    if spec.kind == "anthropic":
        return settings.ANTHROPIC_API_KEY or None
    return ""


def base_url_for(spec: ModelSpec) -> str | None:
    if spec.base_url:
        return spec.base_url
    return {"openai": settings.OPENAI_BASE_URL, "anthropic": settings.ANTHROPIC_BASE_URL}.get(spec.kind) or None


def check_model(model_id: str) -> ModelSpec:
    """Parse a model id and check it can be used here; raises ModelConfigError saying what is missing."""
    spec = parse_model_id(model_id)
    if api_key_for(spec) is None:
        variable = "OPENAI_API_KEY" if spec.kind == "openai" else "ANTHROPIC_API_KEY"
        raise ModelConfigError(f"model {spec.id!r} needs an API key: set {variable}")
    return spec


def default_model() -> str:
    return settings.HARNESS_MODEL


def session_model(stored: str) -> str:
    """The model a session's next run uses: its stored choice, or the deployment's default ("")."""
    return stored or default_model()


def available_models() -> list[str]:
    """The configured model ids a session may use, the default first, without duplicates."""
    ordered = [settings.HARNESS_MODEL, *settings.HARNESS_MODELS]
    return list(dict.fromkeys(m.strip() for m in ordered if m and m.strip()))


def configuration_problems() -> list[str]:
    problems = []
    for model_id in available_models():
        try:
            check_model(model_id)
        except ModelConfigError as exc:
            problems.append(str(exc))
    return problems


def resolve_model(requested: str | None) -> ModelSpec:
    """The model a session or run uses: `requested` if it is one of the configured ones, else the default.

    Raises ModelConfigError when `requested` is not offered here, or when the model cannot be used.
    """
    model_id = (requested or "").strip() or default_model()
    offered = available_models()
    if model_id not in offered:
        raise ModelConfigError(f"model {model_id!r} is not offered here (available: {', '.join(offered)})")
    return check_model(model_id)


def model_choices() -> list[dict]:
    """For clients: every offered model with its label and whether it can be used right now."""
    choices = []
    for model_id in available_models():
        try:
            spec, problem = check_model(model_id), None
        except ModelConfigError as exc:
            spec, problem = None, str(exc)
        choices.append({
            "id": model_id,
            "label": spec.label if spec else model_id,
            "default": model_id == default_model(),
            "available": problem is None,
            "problem": problem,
        })
    return choices
