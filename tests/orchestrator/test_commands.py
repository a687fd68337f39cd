"""Management commands: create_api_token and ensure_demo_user."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orchestrator.models import ApiToken
from orchestrator.services.tokens import user_for_token

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_api_token_creates_the_user_and_prints_only_a_token_stored_hashed():
    output = run("create_api_token", "bob")
    token = output.strip()
    assert output == token + "\n" and token.startswith("hk_") and len(token) > 30
    user = get_user_model().objects.get(username="bob")
    assert not user.has_usable_password()
    stored = ApiToken.objects.get(user=user)
    assert stored.digest == hashlib.sha256(token.encode()).hexdigest() and token not in stored.digest
    assert user_for_token(token) == user
    second = run("create_api_token", "bob").strip()
    assert second != token and ApiToken.objects.filter(user=user).count() == 2


def test_ensure_demo_user_prints_credentials_once():
    first = run("ensure_demo_user")
    password = next(line.split()[-1] for line in first.splitlines() if "password:" in line)
    token = next(line.split()[-1] for line in first.splitlines() if "API token:" in line)
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password(password) and demo.is_staff
    assert user_for_token(token) == demo
    second = run("ensure_demo_user")
    assert password not in second and "changepassword demo" in second
