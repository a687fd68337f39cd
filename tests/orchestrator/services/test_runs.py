"""orchestrator/services/runs.py: what starting a run does to its session (the stop is
test_run_stop.py, the approvals test_approvals.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.models import Run, Session
from orchestrator.services.errors import TooManyRequests
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


def test_a_user_has_at_most_so_many_live_runs(user, settings):
    settings.HARNESS_MAX_LIVE_RUNS_PER_USER = 2
    sessions = [session_create(owner=user) for _ in range(3)]
    for session in sessions[:2]:
        run_start(session_id=session.id, user=user, text="hi")  # two live runs (no worker drives them here)
    with pytest.raises(TooManyRequests) as refused:
        run_start(session_id=sessions[2].id, user=user, text="hi")
    assert (refused.value.status, refused.value.code) == (429, "too_many_runs")
    assert "2 runs in progress" in refused.value.detail
    assert not Run.objects.filter(session=sessions[2]).exists()


def test_a_user_starts_at_most_so_many_runs_a_minute(user, other_user, settings):
    settings.HARNESS_MAX_RUN_STARTS_PER_MINUTE = 2
    session = session_create(owner=user)
    for _ in range(2):
        run = run_start(session_id=session.id, user=user, text="hi")
        Run.objects.filter(pk=run.pk).update(state="completed")  # ended: only the rate counts now
    with pytest.raises(TooManyRequests, match="2 runs in the last minute"):
        run_start(session_id=session.id, user=user, text="hi")
    run_start(session_id=session_create(owner=other_user).id, user=other_user, text="hi")  # per user
    Run.objects.filter(session=session).update(created_at=timezone.now() - timedelta(minutes=2))
    run_start(session_id=session.id, user=user, text="hi")  # a minute later, fine again
