"""System checks: `manage.py check` (and every command that runs checks, `runworker` included) refuses a
model configuration it cannot use, in plain words, before any run fails on it."""

from __future__ import annotations

from django.core.checks import Error, register

from .providers.catalog import configuration_problems


@register("harness")
def check_models(app_configs=None, **kwargs) -> list[Error]:
    return [
        Error(problem, hint="See HARNESS_MODEL / HARNESS_MODELS in README.md.", id="harness.E001")
        for problem in configuration_problems()
    ]
