"""`manage.py ensure_demo_user`: the demo login `make run` prints once (password and API token)."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from orchestrator.services.tokens import api_token_create

USERNAME = "demo"


class Command(BaseCommand):
    help = "Create the demo user (staff, so the admin works) and print its password and an API token once."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        with transaction.atomic():
            if User.objects.filter(username=USERNAME).exists():
                self.stdout.write(
                    f"Demo login: {USERNAME} (its password was printed when it was created; "
                    f"reset it with: .venv/bin/python manage.py changepassword {USERNAME})"
                )
                return
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=USERNAME, email="", password=password)
            token = api_token_create(user=User.objects.get(username=USERNAME))
        self.stdout.write(
            "\n".join(
                [
                    "Demo login created (shown only this once):",
                    f"  username:  {USERNAME}",
                    f"  password:  {password}",
                    f"  API token: {token}",
                ]
            )
        )
