"""orchestrator/services/runs.py: what starting a run does to its session (the stop is
test_run_stop.py, the approvals test_approvals.py)."""

from __future__ import annotations

import pytest

from orchestrator.models import Session
from orchestrator.services.runs import run_start
from orchestrator.services.sessions import session_create, session_update

pytestmark = pytest.mark.django_db(transaction=True)


def title_after_first_run(session: Session, user, text: str = "what is 12 * 7?") -> str:
    run_start(session_id=session.id, user=user, text=text)
    return Session.objects.get(pk=session.pk).title


def test_the_first_message_names_an_unnamed_session(user):
    assert title_after_first_run(session_create(owner=user), user) == "what is 12 * 7?"


def test_a_long_first_message_is_shortened_for_the_title(user):
    title = title_after_first_run(session_create(owner=user), user, "word " * 40)
    assert len(title) == 60 and title.endswith("…")


def test_a_title_the_user_chose_is_kept_even_new_session(user):
    assert title_after_first_run(session_create(owner=user, title="New session"), user) == "New session"
    renamed = session_create(owner=user)
    session_update(session_id=renamed.id, user=user, title="New session")
    assert title_after_first_run(renamed, user) == "New session"
