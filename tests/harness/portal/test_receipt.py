"""The portal's receipt of a run (`GET /runs/<id>/receipt`): who stopped it, and whether from the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orchestrator.models import RunState
from tests.factories import make_run

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("reason, shown", [("user", "alice"), ("admin", "root (admin)")])
def test_the_receipt_says_who_stopped_the_run_and_whether_from_the_admin(client, user, session, reason, shown):
    stopper = user if reason == "user" else get_user_model().objects.create_superuser("root", password="root-pw-1")
    run = make_run(session, RunState.STOPPED, stopped_by=stopper, stop_reason=reason,
                   receipt={"stop": {"requested_by": stopper.get_username(), "latency_ms": 12.5}})
    client.force_login(user)
    page = client.get(f"/runs/{run.id}/receipt").content.decode()
    assert f"<dt>Stopped by</dt><dd>{shown}</dd>" in page
