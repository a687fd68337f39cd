"""orchestrator/metrics.py: what the engine records, read back from the process's registry (counters only
grow, so each test compares before and after)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from orchestrator.models import TERMINAL_STATES, FunctionCall, RunState
from orchestrator.services.runs import run_stop
from tests.helpers import db, script, start, start_parked_on_shell, wait_for_state, wait_terminal, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_finished_run_counts_its_outcome_tools_and_first_token(worker, session, user):
    before = (sample("harness_runs_finished_total", outcome="completed"),
              sample("harness_tool_calls_total", tool="calculator", status="succeeded"),
              sample("harness_tool_duration_seconds_count", tool="calculator"),
              sample("harness_first_token_seconds_count"))
    run = await wait_terminal((await start(session, user, "what is 12 * 7?")).id)
    assert run.outcome == "completed"
    after = (sample("harness_runs_finished_total", outcome="completed"),
             sample("harness_tool_calls_total", tool="calculator", status="succeeded"),
             sample("harness_tool_duration_seconds_count", tool="calculator"),
             sample("harness_first_token_seconds_count"))
    assert [b - a for a, b in zip(before, after)] == [1, 1, 1, 1]


async def test_a_stop_records_its_latency_by_prior_state_and_its_acknowledgement(worker, session, user):
    states = [state for state in RunState.values if state not in TERMINAL_STATES]
    latency = {state: sample("harness_stop_latency_seconds_count", prior_state=state) for state in states}
    ack = sample("harness_stop_ack_seconds_count")
    run = await start(session, user, script({"words": 5000, "delay_ms": 5}))
    await wait_for_state(run.id, "assistant_streaming")
    stopped = await db(run_stop, session_id=session.id, requested_by=user)
    assert stopped.accepted
    assert (await wait_terminal(run.id)).outcome == "stopped"
    # Labelled with the state the stop found the run in (what the stop answered as prior_state).
    assert sample("harness_stop_latency_seconds_count", prior_state=stopped.prior_state) == latency[stopped.prior_state] + 1
    assert sample("harness_stop_ack_seconds_count") == ack + 1
    assert sample("harness_runs_finished_total", outcome="stopped") >= 1


async def test_a_model_error_is_counted_by_kind(worker, session, user):
    before = sample("harness_model_errors_total", kind="scripted_error")
    run = await wait_terminal((await start(session, user, script({"error": "boom"}))).id)
    assert run.outcome == "failed"
    assert sample("harness_model_errors_total", kind="scripted_error") == before + 1


async def test_a_denied_call_is_not_a_tool_run_but_a_stopped_one_is(worker, session, user):
    before = sample("harness_tool_calls_total", tool="shell", status="cancelled")
    run, approval = await start_parked_on_shell(session, user, "sleep 30")
    from orchestrator.services.approvals import approval_decide

    await db(approval_decide, approval_id=approval.id, user=user, decision="approve")
    # The tool is running (not merely the run's state: a stop before the call starts cancels it unrun).
    await wait_until(lambda: FunctionCall.objects.filter(run_id=run.id, status="running").exists(),
                     what="the shell call to run")
    await db(run_stop, session_id=session.id, requested_by=user)
    assert (await wait_terminal(run.id)).outcome == "stopped"
    assert sample("harness_tool_calls_total", tool="shell", status="cancelled") == before + 1
