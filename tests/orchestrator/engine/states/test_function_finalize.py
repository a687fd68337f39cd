"""function_finalize: every call of the turn has its result, so the run goes back through steering_check
(and from there to the model); it writes nothing once another executor holds the lease."""

from __future__ import annotations

import pytest

from orchestrator.engine.context import LeaseLost
from orchestrator.engine.states import function_finalize
from orchestrator.models import Run, RunState
from tests.factories import make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_function_finalize_goes_on_to_steering_check(session):
    run = await db(make_run, session, RunState.FUNCTION_FINALIZE, leased_by=EXECUTOR, turn_count=1)
    after = await function_finalize.handle(make_ctx(run), run)
    assert (after.state, after.prev_state) == (RunState.STEERING_CHECK, RunState.FUNCTION_FINALIZE)
    saved = await db(Run.objects.get, pk=run.pk)
    assert (saved.state, saved.executor_id) == (RunState.STEERING_CHECK, EXECUTOR)  # still driven by this executor


async def test_function_finalize_writes_nothing_once_the_lease_is_lost(session):
    run = await db(make_run, session, RunState.FUNCTION_FINALIZE, leased_by="another-executor", turn_count=1)
    with pytest.raises(LeaseLost):
        await function_finalize.handle(make_ctx(run), run)
    assert (await db(Run.objects.get, pk=run.pk)).state == RunState.FUNCTION_FINALIZE
