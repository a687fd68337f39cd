"""provisioning: the run's first step goes on to the model, or straight to steering_check when a stop landed
before it (the stop flag is kept: nothing clears it)."""

from __future__ import annotations

import pytest

from orchestrator.engine.states import provisioning
from orchestrator.models import Run, RunState
from tests.factories import make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("stop, expected", [(False, RunState.AWAITING_ASSISTANT), (True, RunState.STEERING_CHECK)])
async def test_provisioning_honours_a_stop_that_landed_before_it(session, user, stop, expected):
    run = await db(make_run, session, RunState.PROVISIONING, leased_by=EXECUTOR, stopped_by=user if stop else None)
    after = await provisioning.handle(make_ctx(run), run)
    assert after.state == expected
    assert (await db(Run.objects.get, pk=run.pk)).stop_requested == stop  # nothing clears the flag
