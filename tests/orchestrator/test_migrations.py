"""Data migrations: what existing rows become when a migration adds to them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_SHARING = [("orchestrator", "0008_message_session_newest")]
SHARING = [("orchestrator", "0009_teams_sharing")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_sharing_backfills_authorship_from_the_sessions_owner():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("orchestrator")
    apps = migrate(BEFORE_SHARING)
    try:
        User = apps.get_model("auth", "User")
        Session, Run, Message = (apps.get_model("orchestrator", name) for name in ("Session", "Run", "Message"))
        alice = User.objects.create(username="alice")
        session = Session.objects.create(owner=alice, title="before sharing")
        run = Run.objects.create(session=session, max_turns=5)
        Message.objects.create(session=session, run=run, role="user", text="question")
        Message.objects.create(session=session, run=run, role="assistant", text="answer")
        apps = migrate(SHARING)
        Run, Message = apps.get_model("orchestrator", "Run"), apps.get_model("orchestrator", "Message")
        assert Run.objects.get(pk=run.pk).started_by_id == alice.pk
        assert dict(Message.objects.values_list("role", "author_id")) == {"user": alice.pk, "assistant": None}
    finally:
        migrate(latest)
