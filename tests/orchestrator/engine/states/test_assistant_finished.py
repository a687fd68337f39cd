"""assistant_finished: an answer with calls goes on to function_prepare, or to steering_check after a stop."""

from __future__ import annotations

import pytest

from orchestrator.engine.states import assistant_finished
from orchestrator.models import RunState
from tests.factories import add_calls, make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("stop, expected", [(False, RunState.FUNCTION_PREPARE), (True, RunState.STEERING_CHECK)])
async def test_assistant_finished_routes_pending_calls(session, user, stop, expected):
    run = await db(make_run, session, RunState.ASSISTANT_FINISHED, leased_by=EXECUTOR, stopped_by=user if stop else None)
    await db(add_calls, run, ("clock", {}))
    after = await assistant_finished.handle(make_ctx(run), run)
    assert after.state == expected
