"""awaiting_assistant: counts a turn and goes on to stream, except after a stop (to steering_check, no turn
burnt) or at the turn limit (a visible message, then teardown)."""

from __future__ import annotations

import pytest

from orchestrator.engine.states import awaiting_assistant
from orchestrator.models import Message, RunState
from tests.factories import make_run
from tests.helpers import db

from .steps import EXECUTOR, make_ctx

pytestmark = pytest.mark.django_db(transaction=True)


async def test_awaiting_assistant_counts_a_turn_when_not_stopped(session, user):
    run = await db(make_run, session, RunState.AWAITING_ASSISTANT, leased_by=EXECUTOR, turn_count=1)
    after = await awaiting_assistant.handle(make_ctx(run), run)
    assert (after.state, after.turn_count) == (RunState.ASSISTANT_STREAMING, 2)


async def test_awaiting_assistant_on_stop_goes_to_steering_check_without_burning_a_turn(session, user):
    run = await db(make_run, session, RunState.AWAITING_ASSISTANT, leased_by=EXECUTOR, turn_count=1, stopped_by=user)
    after = await awaiting_assistant.handle(make_ctx(run), run)
    assert (after.state, after.turn_count) == (RunState.STEERING_CHECK, 1)
    assert after.stop_acknowledged_at is not None


async def test_awaiting_assistant_at_max_turns_says_so_and_tears_down(session, user):
    run = await db(make_run, session, RunState.AWAITING_ASSISTANT, leased_by=EXECUTOR, turn_count=3, max_turns=3)
    after = await awaiting_assistant.handle(make_ctx(run), run)
    assert (after.state, after.outcome, after.turn_count) == (RunState.TEARING_DOWN, "stopped", 3)
    texts = await db(lambda: list(Message.objects.filter(run=run).values_list("text", flat=True)))
    assert texts == ["stopped: max turns (3) reached"]
