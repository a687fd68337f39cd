"""`manage.py create_api_token USERNAME`: create the user if needed; print only the new token."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from orchestrator.services.tokens import api_token_create


class Command(BaseCommand):
    help = "Create an API bearer token for USERNAME (creating the user if needed) and print it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            token = api_token_create(user=user)
        self.stdout.write(token)
