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


@pytest.fixture
def chained(monkeypatch):
    """A context with the executor's chain (step.CHAINED), counting its transactions and what it publishes."""
    from orchestrator.engine.context import StepContext
    from orchestrator.engine.step import CHAINED

    transactions, published = [], []
    advance_sync = StepContext._advance_sync

    def counted(self, write):
        transactions.append(write)
        return advance_sync(self, write)

    async def record(session_id, *events):
        published.extend(e for e in events if e["type"] == "run.state")

    monkeypatch.setattr(StepContext, "_advance_sync", counted)
    monkeypatch.setattr("orchestrator.events.publish", record)

    def make(run):
        ctx = make_ctx(run)
        ctx.chain = CHAINED
        return ctx

    return make, transactions, published


async def test_chained_provisioning_commits_through_to_the_opened_answer_in_one_transaction(session, chained):
    make, transactions, published = chained
    run = await db(make_run, session, RunState.PROVISIONING, leased_by=EXECUTOR)
    ctx = make(run)
    after = await provisioning.handle(ctx, run)
    assert (after.state, after.prev_state, after.turn_count) == (RunState.ASSISTANT_STREAMING,
                                                                 RunState.AWAITING_ASSISTANT, 1)
    assert len(transactions) == 1
    # Each state still has its event, in order.
    assert [(e["prev_state"], e["state"]) for e in published] == [
        ("provisioning", "awaiting_assistant"), ("awaiting_assistant", "assistant_streaming")]
    answer = ctx.opened_answer
    assert (answer.run_id, answer.role, answer.status, answer.text) == (run.id, "assistant", "streaming", "")


async def test_a_stop_ends_the_chain_where_it_is_seen(session, user, chained):
    make, transactions, published = chained
    run = await db(make_run, session, RunState.PROVISIONING, leased_by=EXECUTOR, stopped_by=user)
    ctx = make(run)
    after = await provisioning.handle(ctx, run)
    assert (after.state, after.turn_count, ctx.opened_answer) == (RunState.STEERING_CHECK, 0, None)
    assert len(transactions) == 1 and [e["state"] for e in published] == ["steering_check"]
